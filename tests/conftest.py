import os

import numpy as np
import pytest

SQRT3 = np.sqrt(3.0)


@pytest.fixture
def tetrahedron():
    return np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / SQRT3


@pytest.fixture
def icosahedron():
    phi = (1 + np.sqrt(5.0)) / 2
    rows = []
    for a in (1.0, -1.0):
        for b in (phi, -phi):
            rows += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    W = np.array(rows)
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def brute_force_mcbe(W, X, rank_tol=1e-6, values=None):
    """THEORY §3 written out per point: returns (alpha, counts).

    ``values(raw, x)`` maps the raw inner products ``<x, w_i>`` of a point to its
    constraint values (default: the raw inner products, i.e. a data domain).
    """
    m, n = W.shape
    norms = np.linalg.norm(W, axis=1)
    unit = W / norms[:, None]
    alpha = np.full(m, np.inf)
    counts = np.zeros(m, dtype=np.int64)
    for x in X:
        raw = np.array([np.dot(w, x) for w in W])
        key = raw * (1.0 / norms)
        order = np.lexsort((np.arange(m), -key))
        kept = []
        for i in order:
            if kept:
                basis = unit[kept].T
                coef = np.linalg.lstsq(basis, unit[i], rcond=None)[0]
                dist = np.linalg.norm(unit[i] - basis @ coef)
            else:
                dist = np.linalg.norm(unit[i])
            if dist > rank_tol:
                kept.append(i)
            if len(kept) == n:
                break
        vals = raw if values is None else values(raw, x)
        for i in kept:
            alpha[i] = min(alpha[i], vals[i])
            counts[i] += 1
    return alpha, counts


def spans(W, mask):
    """Does each row of ``mask`` select rows of W that span R^n?"""
    n = W.shape[1]
    return np.array([np.linalg.matrix_rank(W[row]) == n if row.sum() >= n else False for row in mask])


def interrupt_after(monkeypatch, plan_class, after):
    """Make the ``after``-th range computed by ``plan_class`` raise KeyboardInterrupt
    (a Ctrl-C in the middle of a run); returns the list holding the call count."""
    original = plan_class.compute
    calls = [0]

    def compute(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == after:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(plan_class, "compute", compute)
    return calls


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every package a test needs is installed by the test extras: a test skipped
    because an import failed is a missing install step, so it fails there instead."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and isinstance(call.excinfo and call.excinfo.value, pytest.skip.Exception):
        reason = str(call.excinfo.value)
        if "could not import" in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI for a missing package: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a module skipped as a whole at import."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and "could not import" in str(report.longrepr):
        report.outcome = "failed"


def close_call_rows(rng, n, m):
    """Gaussian rows, every third from row n on at 0.97 - 1.03 times rank_tol from the
    span of the rows before it: close calls, which two factorisations may round apart."""
    W = rng.standard_normal((m, n))
    for row in range(n, m, 3):
        inside = rng.standard_normal(row - 1) @ W[:row - 1]
        inside /= np.linalg.norm(inside)
        other = rng.standard_normal(n)
        normal = other - inside * (inside @ other)
        normal /= np.linalg.norm(normal)
        d = 1e-6 * rng.uniform(0.97, 1.03)
        W[row] = np.linalg.norm(W[row]) * (inside * np.sqrt(1 - d * d) + d * normal)
    return W
