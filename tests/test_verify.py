import math
from fractions import Fraction

import numpy as np
import pytest

import fastrelu as fr
from fastrelu._injectivity import verify_kernels as kernels
from fastrelu._injectivity.verify import (
    _Arrangement,
    _no_witness_error,
    _verified,
    _verify,
    filter_threshold,
)


def spanning(W, X):
    """For each direction (row of X): number of active rows, and do they span R^n?"""
    m, n = W.shape
    active = X @ W.T >= 0
    codes = active @ (1 << np.arange(m, dtype=np.int64))  # one integer per active set (m < 63)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    masks = active[first]
    spans = np.linalg.matrix_rank(masks[:, :, None] * W[None]) == n  # rows outside the set zeroed
    return active.sum(axis=1), spans[inverse]


def cell_midpoints_2d(W):
    """One direction inside every cell of the arrangement of the lines <w_i, x> = 0 in R^2."""
    normal_angles = np.arctan2(W[:, 1], W[:, 0])
    boundary = np.sort(np.mod(np.concatenate([normal_angles + np.pi / 2, normal_angles - np.pi / 2]), 2 * np.pi))
    upper = np.r_[boundary[1:], boundary[0] + 2 * np.pi]
    middle = (boundary + upper) / 2
    return np.c_[np.cos(middle), np.sin(middle)]


def check_witness(W, verdict):
    """The witness is a unit vector whose active rows do not span R^n."""
    n = W.shape[1]
    if verdict.injective:
        assert verdict.witness is None and verdict.witness_active is None
        return
    x = verdict.witness
    assert x.shape == (n,)
    assert abs(np.linalg.norm(x) - 1.0) < 1e-12
    active = np.flatnonzero(W @ x >= 0)
    np.testing.assert_array_equal(active, verdict.witness_active)
    assert active.size < n or np.linalg.matrix_rank(W[active]) < n
    U = W / np.abs(W).max(axis=1, keepdims=True)  # norms that neither over- nor underflow
    margin = np.min(np.abs(U @ x) / np.linalg.norm(U, axis=1))
    assert verdict.witness_margin == pytest.approx(margin, rel=1e-9, abs=1e-15)
    assert verdict.witness_margin > 0


def same(a, b):
    """Two verdicts agree in everything but the elapsed time."""
    assert (a.injective, a.min_active, a.sign, a.n_subsets, a.subsets_checked, a.n_hyperplanes) == \
        (b.injective, b.min_active, b.sign, b.n_subsets, b.subsets_checked, b.n_hyperplanes)
    np.testing.assert_array_equal(a.subset, b.subset)
    np.testing.assert_array_equal(a.vertex, b.vertex)
    if a.witness is None:
        assert b.witness is None
    else:
        np.testing.assert_array_equal(a.witness, b.witness)
        np.testing.assert_array_equal(a.witness_active, b.witness_active)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 2), (2, 3), (3, 5), (4, 7), (5, 6), (6, 11)])
def test_fewer_than_2n_rows_are_never_injective(n, m):
    rng = np.random.default_rng(10 * n + m)
    for _ in range(5):
        W = rng.standard_normal((m, n))
        verdict = fr.verify_injective(W)
        assert not verdict.injective
        assert verdict.min_active < n  # one of x, -x has fewer than n active rows
        check_witness(W, verdict)


@pytest.mark.parametrize("n, m", [(4, 5), (8, 12), (30, 50), (60, 100)])
def test_fewer_than_2n_rows_are_answered_whatever_the_budget(n, m):
    # C(p, n-1) subsets far beyond any budget (C(50, 29) ~ 6.7e13): the verdict comes in
    # closed form, with a witness checked in exact arithmetic and clear of rounding
    W = np.random.default_rng(n + m).standard_normal((m, n))
    verdict = fr.verify_injective(W, max_subsets=2)
    assert not verdict.injective and verdict.closed_form
    assert verdict.subsets_checked == 0 and verdict.n_subsets == math.comb(m, n - 1)
    assert verdict.min_active == verdict.witness_active.size < n
    np.testing.assert_array_equal(verdict.vertex, verdict.witness)
    check_witness(W, verdict)
    assert verdict.witness_margin > 1e-6
    if m < 40:  # within the default budget the scan adds the exact minimum
        full = fr.verify_injective(W)
        assert not full.closed_form and full.subsets_checked == full.n_subsets
        assert full.min_active <= verdict.min_active
        check_witness(W, full)


def test_fewer_than_2n_rows_not_in_general_position():
    # many rows in common hyperplanes and more subsets than the exact enumeration takes:
    # refused before, answered in closed form now
    rng = np.random.default_rng(12)
    W = rng.integers(-1, 2, size=(17, 9)).astype(float)
    W[:, 0] = 1.0
    verdict = fr.verify_injective(W)
    assert not verdict.injective and verdict.closed_form
    check_witness(W, verdict)


def test_witness_is_clear_of_rounding():
    # Eight unit rows in the plane x3 = 0, rows k and k + 4 opposite only up to rounding
    # (about 6e-16), and two rows out of the plane: the failing cell next to the first
    # minimal ray is thinner than rounding, and a witness there lies ~1e-18 from two
    # hyperplanes, where W @ x >= 0 in floating point finds rows that span R^3. The
    # witness of largest margin is found in a wide failing cell instead.
    angles = 0.1 + np.arange(8) * np.pi / 4
    W = np.vstack([np.c_[np.cos(angles), np.sin(angles), np.zeros(8)],
                   [[0.2, 0.1, 1.0], [0.1, -0.3, -1.0]]])
    verdict = fr.verify_injective(W)
    assert not verdict.injective and verdict.min_active == 4
    assert verdict.witness_margin > 1e-3  # clearly above rounding
    active = W @ verdict.witness >= 0
    np.testing.assert_array_equal(np.flatnonzero(active), verdict.witness_active)
    assert np.linalg.matrix_rank(W[active]) < 3
    check_witness(W, verdict)


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_extreme_scales_give_the_same_verdict(scale):
    rng = np.random.default_rng(13)
    W = rng.standard_normal((9, 3))
    base = fr.verify_injective(W)
    for weight, reference in ((W, base), (np.vstack([W, -W]), fr.verify_injective(np.vstack([W, -W])))):
        verdict = fr.verify_injective(weight * scale)
        assert (verdict.injective, verdict.min_active, verdict.n_hyperplanes) == \
            (reference.injective, reference.min_active, reference.n_hyperplanes)
        np.testing.assert_array_equal(verdict.subset, reference.subset)
        np.testing.assert_allclose(verdict.vertex, reference.vertex, rtol=1e-12, atol=1e-15)
        if not reference.injective:
            np.testing.assert_allclose(verdict.witness, reference.witness, rtol=1e-9, atol=1e-12)
            check_witness(weight * scale, verdict)
    closed = fr.verify_injective(W[:5] * scale)  # m < 2n
    assert not closed.injective
    check_witness(W[:5] * scale, closed)


@pytest.mark.parametrize("n, k", [(1, 1), (1, 3), (2, 2), (2, 5), (3, 3), (3, 7), (4, 4), (4, 9), (5, 8)])
def test_plus_minus_W_is_injective_iff_rank_n(n, k):
    rng = np.random.default_rng(100 + 10 * n + k)
    W = rng.standard_normal((k, n))
    verdict = fr.verify_injective(np.vstack([W, -W]))
    # every x sees exactly one of w_i, -w_i active (both on the boundary): k rows
    assert verdict.injective and verdict.min_active == k
    assert verdict.n_hyperplanes == (k if n > 1 else 1) and verdict.n_exact == 0
    if n > 1:
        W[:, -1] = W[:, :-1] @ rng.standard_normal(n - 1)  # rank n - 1
        with pytest.raises(fr.FastReluError, match=rf"must be a frame for R\^{n}"):
            fr.verify_injective(np.vstack([W, -W]))


def test_agrees_with_all_cells_in_the_plane():
    rng = np.random.default_rng(1)
    injective = 0
    for trial in range(200):
        m = int(rng.integers(2, 12))
        W = rng.standard_normal((m, 2))
        if trial % 4 == 0:  # repeated and opposite rows (exactly)
            W = np.vstack([W, -W[:2], 2.0 * W[:1], W[-1:]])
        verdict = fr.verify_injective(W)
        counts, spans = spanning(W, cell_midpoints_2d(W))
        assert verdict.min_active == counts.min()
        assert verdict.injective == spans.all()
        injective += verdict.injective
        check_witness(W, verdict)
    assert 40 <= injective <= 160  # both verdicts are exercised


@pytest.mark.parametrize("n", [3, 4])
def test_agrees_with_dense_direction_sampling(n):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((80_000, n))
    equal = missed = injective = 0
    trials = 100
    for trial in range(trials):
        m = int(rng.integers(2 * n - 1, 6 * n + 1))
        W = rng.standard_normal((m, n))
        if trial % 5 == 0:
            W = np.vstack([W, -W[:2], 0.5 * W[:1]])
        verdict = fr.verify_injective(W)
        counts, spans = spanning(W, X)
        # samples never go below the minimum over all directions ...
        assert counts.min() >= verdict.min_active
        equal += counts.min() == verdict.min_active
        if verdict.injective:
            assert spans.all()
            injective += 1
        else:
            # ... and a sampled non-spanning direction means non-injective
            missed += spans.all()  # the failing cell can be too small to be sampled
        check_witness(W, verdict)
    assert equal >= 0.9 * trials
    assert missed <= 0.05 * trials
    assert 0.1 * trials <= injective <= 0.9 * trials


@pytest.mark.parametrize("W, injective, min_active", [
    (np.vstack([np.eye(3), -np.eye(3)]), True, 3),
    (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float), False, 1),
    (np.array([[1.0], [-2.0], [3.0]]), True, 1),
    (np.array([[1.0], [2.0], [3.0]]), False, 0),
    (np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -3.0], [0.0, 5.0]]), True, 2),
])
def test_known_layers(W, injective, min_active):
    verdict = fr.verify_injective(W)
    assert verdict.injective == injective and verdict.min_active == min_active
    check_witness(W, verdict)


@pytest.mark.parametrize("n", [3, 4])
def test_non_generic_rows_agree_with_dense_direction_sampling(n):
    """Integer rows in {-1, 0, 1}^n: many rows in common hyperplanes, decided by
    enumerating every cell."""
    rng = np.random.default_rng(30 + n)
    X = rng.standard_normal((50_000, n))
    equal = injective = generic = 0
    trials = 40
    for _ in range(trials):
        m = int(rng.integers(n + 1, 6 * n + 1))
        W = rng.integers(-1, 2, size=(m, n)).astype(float)
        W = W[np.abs(W).sum(axis=1) > 0]
        if np.linalg.matrix_rank(W) < n:
            continue
        verdict = fr.verify_injective(W)
        counts, spans = spanning(W, X)
        assert counts.min() >= verdict.min_active
        equal += counts.min() == verdict.min_active
        assert verdict.injective == spans.all()  # the cells of small integer rows are wide
        injective += verdict.injective
        generic += verdict.general_position
        check_witness(W, verdict)
    assert equal >= 0.9 * trials and injective >= 5 and generic <= 0.3 * trials


def test_at_least_n_active_rows_need_not_span():
    # eight directions in the plane x3 = 0 and e3: below the plane four rows are active
    # (one of each opposite pair) but they span only the plane
    W = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 1, 0], [-1, 0, 0], [-1, -1, 0],
                  [0, -1, 0], [1, -1, 0], [0, 0, 1]], dtype=float)
    verdict = fr.verify_injective(W)
    assert not verdict.injective and not verdict.general_position
    assert verdict.min_active == 4 > W.shape[1]
    assert verdict.witness[2] < 0 and np.linalg.matrix_rank(W[verdict.witness_active]) == 2
    check_witness(W, verdict)
    # with -e3 as well every cell spans: [W; -W] with rank W = 3
    verdict = fr.verify_injective(np.vstack([W, [[0, 0, -1]]]))
    assert verdict.injective and verdict.min_active == 5 and not verdict.general_position


@pytest.mark.parametrize("W, injective, min_active", [
    (np.vstack([np.eye(3), [[1.0, 1.0, 0.0]], -np.eye(3)]), True, 3),
    (np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [-1, -1, -1, -1]]), False, 1),
    (np.vstack([[[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], -np.array([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])]), True, 4),
])
def test_small_non_generic_layers(W, injective, min_active):
    verdict = fr.verify_injective(W)
    assert (verdict.injective, verdict.min_active, verdict.general_position) == (injective, min_active, False)
    check_witness(W, verdict)
    X = np.random.default_rng(0).standard_normal((50_000, W.shape[1]))
    counts, spans = spanning(W, X)
    assert counts.min() == min_active and spans.all() == injective


def test_one_dimensional_witness_and_vertex():
    verdict = fr.verify_injective(np.array([[1.0], [2.0], [3.0]]))
    np.testing.assert_array_equal(verdict.witness, [-1.0])
    np.testing.assert_array_equal(verdict.vertex, [-1.0])
    assert verdict.subset.shape == (0,) and verdict.n_subsets == 1


def test_reports_the_minimal_cell():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((9, 3))
    verdict = fr.verify_injective(W)
    T = verdict.subset
    v = verdict.vertex
    np.testing.assert_allclose(W[T] @ v, 0.0, atol=1e-12)
    others = np.setdiff1d(np.arange(9), T)
    assert np.sum(W[others] @ v > 0) == verdict.min_active
    assert verdict.n_subsets == verdict.subsets_checked == 36


def test_deterministic_for_any_number_of_threads():
    rng = np.random.default_rng(5)
    for W in (rng.standard_normal((30, 5)), rng.standard_normal((20, 5))):
        runs = [_verify(W, n_jobs=jobs, block_subsets=97) for jobs in (1, 2, 3)]
        runs.append(fr.verify_injective(W, n_jobs=2))
        for run in runs[1:]:
            same(runs[0], run)
    assert not runs[0].injective  # the witness too is the same


@pytest.mark.parametrize("n, m", [(2, 300), (3, 120), (4, 40), (5, 20)])
def test_sweep_direct_and_blocks_agree(n, m):
    rng = np.random.default_rng(m)
    W = rng.standard_normal((m, n))
    W[: m // 10] = W[m // 10: 2 * (m // 10)] * -1.0  # some opposite rows: weights on both sides
    reference = _verify(W, sweep_min=10**9)
    same(reference, _verify(W, sweep_min=2, block_subsets=13))
    same(reference, _verify(W, sweep_min=20, block_subsets=1))


@pytest.mark.parametrize("n", [2, 3])
def test_sweep_with_signed_zeros_and_axis_rows(n):
    rng = np.random.default_rng(40 + n)
    axes = -np.eye(n)  # angles of exactly pi: their half-turn has a -0.0 component
    axes[axes == 0] = -0.0  # -0.0 sorts last by its bits: the angles must not carry it
    W = np.vstack([rng.standard_normal((120, n)), axes])
    for weight in (W, -W):
        same(_verify(weight, sweep_min=10**9), _verify(weight, sweep_min=2))


@pytest.mark.parametrize("n, m, close", [(2, 300, 10), (3, 120, 2), (4, 40, 1)])
def test_sweep_with_nearly_coincident_points(n, m, close):
    rng = np.random.default_rng(20 + n)
    W = rng.standard_normal((m, n))
    W[-close:] = W[:close] * (1 + 1e-15)  # parallel up to rounding: angular neighbours 1e-16 apart
    W[-2 * close:-close] = W[close:2 * close] + 1e-9 * rng.standard_normal((close, n))
    W[-2 * close - 5:-2 * close] = -W[20:25]  # opposite rows
    W[-2 * close - 6] = W[30] + W[31] + 1e-14 * W[32]  # nearly in the plane of two others
    reference = _verify(W, sweep_min=10**9)
    assert reference.n_exact > 0
    same(reference, _verify(W, sweep_min=2, block_subsets=50))


@pytest.mark.parametrize("n, m", [(2, 12), (3, 14), (4, 12)])
def test_exact_arithmetic_agrees_with_the_filter(n, m):
    rng = np.random.default_rng(n)
    for _ in range(5):
        W = rng.standard_normal((m, n))
        W = np.vstack([W, -W[:2]])
        reference = _verify(W)
        assert reference.n_exact == 0
        # a huge filter threshold sends many subsets to exact arithmetic
        exact = _verify(W, delta=0.3)
        assert exact.n_exact > 0
        same(reference, exact)


def test_nearly_degenerate_rows_are_decided_exactly():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((10, 3))
    W = np.vstack([W, W[0] + W[1] + 1e-15])  # within rounding of the plane of rows 0, 1
    verdict = fr.verify_injective(W)
    assert verdict.n_exact > 0
    check_witness(W, verdict)


def test_rows_parallel_only_up_to_rounding():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((7, 3))
    W = np.vstack([W, W[:3] * 2.5, -W[4:5]])  # 2.5 w is not exactly parallel to w
    verdict = fr.verify_injective(W)
    assert verdict.n_hyperplanes == 10 and verdict.n_exact > 0
    assert not verdict.injective and verdict.min_active == 1
    check_witness(W, verdict)  # from the deepest point of the cell: the first guess is too close


def test_a_witness_is_only_returned_when_it_checks_out():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    arr = _Arrangement(W)
    assert _verified(arr, [1.0, 1.0]) is None  # all three rows active: they span
    x, active = _verified(arr, [-1.0, 0.5])  # only row 1 active
    np.testing.assert_array_equal(active, [1])
    assert x.shape == (2,) and abs(np.linalg.norm(x) - 1) < 1e-15
    with pytest.raises(fr.FastReluError, match="thinner than floating-point rounding"):
        raise _no_witness_error(arr, (0,))


def test_filter_bounds_the_rounding_of_the_determinants():
    """|D_float - D_exact| stays far below delta, also for ill-conditioned prefixes."""
    rng = np.random.default_rng(2)
    n = 5
    worst = 0.0
    for _trial in range(200):
        U = rng.standard_normal((n + 3, n))
        scale = 10.0 ** -rng.uniform(0, 8)
        U[1] = U[0] + scale * U[1]  # nearly dependent prefix rows
        U /= np.linalg.norm(U, axis=1)[:, None]
        comb = np.arange(n - 1, dtype=np.int64)
        basis = np.zeros((2, n))
        volume = kernels.prefix_frame(U, comb, n - 2, 0, np.zeros((n, n)), np.zeros((n, n)), np.zeros(n), np.zeros(n), basis)
        z = U @ basis.T
        last = n - 2
        for g in range(n - 1, n + 3):
            D = volume * (z[last, 0] * z[g, 1] - z[last, 1] * z[g, 0])
            M = [[Fraction(float(x)) for x in U[i]] for i in list(range(n - 1)) + [g]]
            worst = max(worst, abs(D - float(_fraction_det(M))))
    assert worst < filter_threshold(n) / 8


def _fraction_det(M):
    M = [row[:] for row in M]
    det = Fraction(1)
    for k in range(len(M)):
        pivot = max(range(k, len(M)), key=lambda i: abs(M[i][k]))
        if M[pivot][k] == 0:
            return Fraction(0)
        if pivot != k:
            M[k], M[pivot] = M[pivot], M[k]
            det = -det
        det *= M[k][k]
        for i in range(k + 1, len(M)):
            f = M[i][k] / M[k][k]
            M[i] = [a - f * b for a, b in zip(M[i], M[k])]
    return det


@pytest.mark.parametrize("weight, kwargs, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]), {}, "must contain only finite numbers"),
    (np.array([1.0, 2.0, 3.0]), {}, "must be a 2-D array"),
    (np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), {}, r"no zero rows .* indices \[1\]"),
    (np.array([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0]]), {}, "must be a frame for R\\^2"),
    (np.random.default_rng(0).standard_normal((40, 4)), {"max_subsets": 9_000},
     r"at most max_subsets=9,000 .* C\(40, 3\) = 9,880 subsets"),
    (np.vstack([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], np.random.default_rng(1).standard_normal((198, 3))]), {},
     r"general position .* C\(201, 2\) = 20,100 subsets where row 2 lies in the hyperplane spanned by rows \[0, 1\]"),
    (np.vstack([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                np.random.default_rng(2).standard_normal((46, 4))]), {},
     r"rows \[0, 1, 2\], n-1 = 3 rows of distinct directions, are linearly dependent"),
    (np.eye(2), {"max_subsets": 0}, "'max_subsets' parameter must be an integer >= 1"),
    (np.eye(2), {"n_jobs": 0}, "'n_jobs' parameter must be an integer >= 1"),
])
def test_bad_input_is_refused(weight, kwargs, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.verify_injective(weight, **kwargs)
