"""``fastrelu batch SPEC.toml --out DIR``: a list or grid of bias estimations.

The spec (TOML, see docs/batch.md) lists jobs in ``[[job]]`` tables and sweeps in
``[[grid]]`` tables (the product of every list they hold), all starting from
``[defaults]``. Each job writes ``DIR/NAME.npz`` (the arrays) and then ``DIR/NAME.json``
(what was run and what came out); a job whose JSON records success for the same
parameters and inputs is skipped on a rerun, and an MCBE job interrupted mid-way resumes
from its checkpoint ``DIR/NAME.<fingerprint>.checkpoint.npz``. ``DIR/summary.json`` and
``DIR/summary.csv`` list every job.
"""

import csv
import difflib
import hashlib
import io
import itertools
import json
import os
import re
import sys
import time
import tomllib

import numpy as np
from tqdm.auto import tqdm

from fastrelu._bias.mcbe import mcbe_budget
from fastrelu._core import budget as _budget
from fastrelu._core.domains import Ball, Data, Shell, Sphere
from fastrelu._core.errors import FastReluError
from fastrelu._core.io import load_array

#: The keys of a job, with the types a value may have (for the messages: their names).
JOB_KEYS = {
    "name": (str,), "method": (str,), "weights": (str, dict), "key": (str,),
    "domain": (str,), "radius": (int, float), "inner": (int, float), "outer": (int, float),
    "nonnegative": (bool,), "data": (str,), "data_key": (str,), "samples": (int,),
    "seed": (int,), "margin": (str, int, float), "rank_tol": (float, int),
}
#: The keys of a random layer ``weights = {random = "gaussian", m = 270, n = 30}``.
RANDOM_KEYS = {"random": (str,), "m": (int,), "n": (int,), "seed": (int,)}
RANDOM_KINDS = ("gaussian", "sphere")
METHODS = ("mcbe", "pbe")
DOMAINS = ("sphere", "ball", "shell", "data")
TOP_KEYS = ("defaults", "job", "grid")
_TYPE_NAMES = {str: "a string", dict: "a table", int: "an integer", float: "a float", bool: "a boolean"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _unknown(key, allowed, where):
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return FastReluError(f"The key '{key}' {where} is not known{hint}. Allowed keys: {', '.join(sorted(allowed))}.")


def _check_value(key, value, where, types):
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        expected = " or ".join(_TYPE_NAMES[t] for t in types)
        raise FastReluError(f"The key '{key}' {where} must be {expected}. Got {value!r} instead.")


def _check_table(table, where, *, grid=False):
    for key, value in table.items():
        if key not in JOB_KEYS:
            raise _unknown(key, JOB_KEYS, where)
        values = value if grid and isinstance(value, list) else [value]
        if grid and isinstance(value, list) and not value:
            raise FastReluError(f"The key '{key}' {where} must be a non-empty list to sweep. Got [] instead.")
        for item in values:
            _check_value(key, item, where, JOB_KEYS[key])
            if key == "weights" and isinstance(item, dict):
                for sub, subvalue in item.items():
                    if sub not in RANDOM_KEYS:
                        raise _unknown(sub, RANDOM_KEYS, f"of the random weights {where}")
                    _check_value(sub, subvalue, f"of the random weights {where}", RANDOM_KEYS[sub])
                for sub in ("random", "m", "n"):
                    if sub not in item:
                        raise FastReluError(f"The random weights {where} must give '{sub}' (e.g. weights = {{random = \"gaussian\", m = 270, n = 30, seed = 0}}). Got {item!r} instead.")
                if item["random"] not in RANDOM_KINDS:
                    raise FastReluError(f"The key 'random' of the weights {where} must be one of {list(RANDOM_KINDS)}. Got {item['random']!r} instead.")
            for name, choices in (("method", METHODS), ("domain", DOMAINS)):
                if key == name and item not in choices:
                    raise FastReluError(f"The key '{name}' {where} must be one of {list(choices)}. Got {item!r} instead.")


def _label(key, value):
    """A short file-name-safe label of a job's value (file names by their stem)."""
    if isinstance(value, dict):
        text = f"{value['random']}{value['m']}x{value['n']}" + (f"s{value['seed']}" if "seed" in value else "")
    elif key in ("weights", "data"):
        text = os.path.splitext(os.path.basename(value))[0]
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _parse_toml(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise FastReluError(f"The 'SPEC' file must exist and be readable. Got {path!r} ({exc.strerror}).") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        lines = text.splitlines()
        found = re.search(r"at line (\d+)", message)
        number = int(found.group(1)) if found else len(lines)
        quoted = lines[number - 1].strip() if 0 < number <= len(lines) else ""
        raise FastReluError(f"The 'SPEC' file must be valid TOML. Got {message} in {path!r}, line {number}: {quoted!r}.") from None


def load_spec(path, *, n_jobs=1):
    """The jobs of a spec file, each a dict of its resolved keys (paths made absolute).

    Raises FastReluError naming the line of malformed TOML, unknown keys (with the
    allowed ones), values of the wrong type, jobs without weights, repeated names and
    random weights whose job would not fit in memory with ``n_jobs`` worker threads
    (the check the batch makes once, before any job runs).
    """
    spec = _parse_toml(path)
    name = os.path.basename(path)
    for key in spec:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, f"at the top of {name}")
    defaults = spec.get("defaults", {})
    if not isinstance(defaults, dict):
        raise FastReluError(f"The key 'defaults' in {name} must be a table ([defaults]). Got {defaults!r} instead.")
    _check_table(defaults, f"in [defaults] of {name}")
    jobs = []
    for kind in ("job", "grid"):
        tables = spec.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise FastReluError(f"The key '{kind}' in {name} must be an array of tables ([[{kind}]]). Got {tables!r} instead.")
        for number, table in enumerate(tables, 1):
            where = f"in [[{kind}]] number {number} of {name}"
            _check_table(table, where, grid=kind == "grid")
            if kind == "job":
                job = {**defaults, **table}
                job.setdefault("name", f"job{number}")
                jobs.append((job, where))
                continue
            swept = [key for key, value in table.items() if isinstance(value, list)]
            fixed = {key: value for key, value in table.items() if key not in swept}
            template = fixed.pop("name", None)
            for values in itertools.product(*(table[key] for key in swept)):
                job = {**defaults, **fixed, **dict(zip(swept, values))}
                labels = {key: _label(key, job[key]) for key in JOB_KEYS if key in job}
                if template is None:
                    job["name"] = "-".join([f"grid{number}"] + [labels[key] for key in swept])
                else:
                    try:
                        job["name"] = template.format(**labels)
                    except (KeyError, IndexError, ValueError) as exc:
                        raise FastReluError(f"The key 'name' {where} must be a template of the job's keys such as \"{{weights}}-{{domain}}-{{samples}}\". Got {template!r} ({type(exc).__name__}: {exc}).") from None
                jobs.append((job, where))
    if not jobs:
        raise FastReluError(f"The 'SPEC' file must define at least one [[job]] or [[grid]]. Got none in {name}.")
    folder = os.path.dirname(os.path.abspath(path))
    resolved, seen = [], {}
    for job, where in jobs:
        if "weights" not in job:
            raise FastReluError(f"The key 'weights' {where} must be given (a file, or a table such as {{random = \"gaussian\", m = 270, n = 30}}). Got a job {job['name']!r} without weights.")
        if not _SAFE_NAME.match(job["name"]):
            raise FastReluError(f"The key 'name' {where} must be a file name of letters, digits, '.', '_' and '-'. Got {job['name']!r} instead.")
        if job["name"] in seen:
            raise FastReluError(f"The key 'name' {where} must be unique. Got {job['name']!r}, also the name of a job {seen[job['name']]}.")
        seen[job["name"]] = where
        for key in ("weights", "data"):
            if isinstance(job.get(key), str):
                job[key] = os.path.join(folder, os.path.expanduser(job[key]))
        job.setdefault("method", "mcbe")
        job.setdefault("domain", "sphere")
        _check_job(job, where, n_jobs)
        resolved.append(job)
    return resolved


def _check_job(job, where, n_jobs):
    """The values of a resolved job, checked by the rules of the functions it will call,
    so that a bad value stops the batch before any job runs rather than when its turn
    comes; input files must exist (their contents are checked when the job runs)."""
    from fastrelu._bias.mcbe import margin_value
    from fastrelu._core.validation import positive_int, rank_tol_value, seed_value

    try:
        weights = job["weights"]
        if isinstance(weights, dict):
            for key in ("m", "n"):
                positive_int(weights[key], key)
            if job["method"] != "pbe":
                # before any job runs: the random weights and MCBE's copies must fit,
                # with the per-thread scratch of the threads the job will run with
                batch_weights_budget(weights["m"], weights["n"], n_jobs).check_memory()
            seed_value(weights.get("seed", 0), "seed")
        on_data = job["domain"] == "data"
        for key in ("weights", "data") if on_data else ("weights",):
            if isinstance(job.get(key), str) and not os.path.isfile(job[key]):
                raise FastReluError(f"The '{key}' file must exist. Got {job[key]!r}, which is not a file.")
        if job["method"] == "mcbe":
            if "samples" in job:
                positive_int(job["samples"], "samples")
            seed_value(job.get("seed", 0), "seed")
            rank_tol_value(job.get("rank_tol", 1e-6))
            if not on_data:
                margin_value(job.get("margin"), 1, _domain(job, 1))
        if on_data:
            _data_path(job)
        else:
            _domain(job, 1)  # radii: the rules of Sphere, Ball and Shell
    except FastReluError as exc:
        raise FastReluError(f"The job {job['name']!r} {where} cannot run: {exc}") from None


def _file_digest(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def job_fingerprint(job):
    """Hash of a job's parameters and of the bytes of its input files."""
    files = {key: _file_digest(job[key]) for key in ("weights", "data") if isinstance(job.get(key), str)}
    text = json.dumps({"job": job, "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _weights(job):
    spec = job["weights"]
    if isinstance(spec, dict):
        m, n = spec["m"], spec["n"]
        if m < 1 or n < 1:
            raise FastReluError(f"The random weights must have m >= 1 and n >= 1. Got m={m}, n={n} instead.")
        rng = np.random.default_rng(spec.get("seed", 0))
        W = rng.standard_normal((m, n))
        if spec["random"] == "sphere":
            return W / np.linalg.norm(W, axis=1, keepdims=True)
        return W / np.sqrt(n)
    W = load_array(spec, "weights", key=job.get("key"), key_option="the job's 'key'")
    if np.ndim(W) != 2:
        raise FastReluError(f"The 'weights' file must hold a 2-D array. Got shape {np.shape(W)} in {spec!r}.")
    return W


def _data_path(job):
    if "data" not in job:
        raise FastReluError("The data domain needs the key 'data' (a file of points, N x n).")
    return job["data"]


def _domain(job, dim):
    kind, nonnegative = job["domain"], job.get("nonnegative", False)
    if kind == "data":
        return Data(load_array(_data_path(job), "data", key=job.get("data_key"), key_option="the job's 'data_key'"))
    if kind == "shell":
        if "inner" not in job or "outer" not in job:
            raise FastReluError("The shell domain needs both keys 'inner' and 'outer'.")
        return Shell(dim, job["inner"], job["outer"], nonnegative)
    return (Sphere if kind == "sphere" else Ball)(dim, job.get("radius", 1.0), nonnegative)


def _atomic_write(path, write):
    """Write through a temporary file that is flushed to disk and then renamed over
    ``path``, so that after a crash or a power cut ``path`` holds the old or the new
    contents, never a part."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    _sync_directory(os.path.dirname(os.path.abspath(path)))


def _sync_directory(folder):
    """Flush a directory's entries (the rename) to disk, where the system allows it."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems do not sync directories
    finally:
        os.close(handle)


def _checkpoints(out, name):
    """The checkpoint files of the job ``name`` in ``out`` (any fingerprint)."""
    prefix, suffix = f"{name}.", ".checkpoint.npz"
    return [os.path.join(out, f) for f in os.listdir(out)
            if f.startswith(prefix) and f.endswith(suffix) and "." not in f[len(prefix):-len(suffix)]]


def _run_job(job, out, checkpoint, *, n_jobs, client, interval):
    """Run one job and write its ``.npz``; returns the facts for its record."""
    from fastrelu._bias.mcbe import DEFAULT_SAMPLES, mcbe
    from fastrelu._bias.pbe import pbe

    weight = _weights(job)  # random weights: load_spec checked that they fit
    domain = _domain(job, weight.shape[1])
    if job["method"] == "pbe":
        result = pbe(weight, domain)
    else:
        on_data = job["domain"] == "data"  # every point is used, nothing to correct
        samples = None if on_data else job.get("samples", DEFAULT_SAMPLES)
        result = mcbe(weight, domain, samples, seed=job.get("seed", 0),
                      margin=None if on_data else job.get("margin"),
                      rank_tol=job.get("rank_tol", 1e-6),
                      n_jobs=n_jobs, client=client,
                      checkpoint=checkpoint, checkpoint_interval=interval)
    arrays = {"alpha": result.alpha, "alpha_sampled": result.alpha_sampled,
              "counts": result.counts, "repeated": result.repeated}
    if result.facets is not None:
        arrays["facets"] = result.facets
    result_path = os.path.join(out, f"{job['name']}.npz")
    _atomic_write(result_path, lambda h: np.savez(h, **arrays))
    finite = result.alpha[np.isfinite(result.alpha)]
    return {"method": result.method, "domain": repr(result.domain), "shape": list(weight.shape),
            "n_samples": result.n_samples, "seed": result.seed, "margin": result.margin,
            "alpha_min": float(finite.min()) if finite.size else None,
            "alpha_median": float(np.median(finite)) if finite.size else None,
            "alpha_max": float(finite.max()) if finite.size else None,
            "unconstrained": int(result.unconstrained.sum()), "n_incomplete": result.n_incomplete,
            "n_facets": None if result.facets is None else int(result.facets.shape[0]),
            "elapsed": result.elapsed, "result": f"{job['name']}.npz",
            "result_sha256": _file_digest(result_path)}


def _finished(path, fingerprint):
    """The stored record when the job at ``path`` finished with these parameters and its
    result file is the one it wrote (same SHA-256: not truncated, replaced or lost)."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("status") == "ok"
            and record.get("fingerprint") == fingerprint):
        return None
    result = os.path.join(os.path.dirname(path), os.path.basename(str(record.get("result"))))
    digest = record.get("result_sha256")
    if digest is None or _file_digest(result) != digest:
        return None
    return record


SUMMARY_COLUMNS = ("name", "status", "method", "domain", "shape", "n_samples", "seed",
                   "alpha_min", "alpha_median", "alpha_max", "unconstrained", "elapsed", "error")


def run_batch(spec_path, out, *, n_jobs=None, client=None, checkpoint_interval=None,
              progress=None):
    """Run the jobs of ``spec_path`` into the directory ``out``; returns the records."""
    from fastrelu._core.validation import n_jobs_value
    from fastrelu._runtime.blocks import interval_value

    # options common to all jobs are checked once, before any job runs
    n_jobs = n_jobs_value(n_jobs)
    checkpoint_interval = interval_value(checkpoint_interval)
    jobs = load_spec(spec_path, n_jobs=n_jobs)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise FastReluError(f"The '--out' directory must be creatable. Got {out!r} ({exc.strerror}).") from None
    records = []
    bar = tqdm(total=len(jobs), desc="batch", unit="job", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    try:
        for job in jobs:
            bar.set_postfix_str(job["name"])
            fingerprint = job_fingerprint(job)
            record_path = os.path.join(out, f"{job['name']}.json")
            record = _finished(record_path, fingerprint)
            if record is not None:
                records.append({**record, "status": "skipped"})
                bar.update(1)
                continue
            record = {"name": job["name"], "status": "ok", "fingerprint": fingerprint,
                      "job": job, "error": None}
            # the checkpoint is named by the fingerprint: one of a job whose parameters or
            # inputs changed since is stale, and removed
            checkpoint = os.path.join(out, f"{job['name']}.{fingerprint[:16]}.checkpoint.npz")
            for stale in _checkpoints(out, job["name"]):
                if stale != checkpoint:
                    os.remove(stale)
            start = time.perf_counter()
            try:
                record.update(_run_job(job, out, checkpoint, n_jobs=n_jobs, client=client,
                                       interval=checkpoint_interval))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a failed job is recorded; the others still run
                text = str(exc) if isinstance(exc, FastReluError) else f"{type(exc).__name__}: {exc}"
                record.update(status="failed", error=text, elapsed=time.perf_counter() - start)
            text = json.dumps(record, indent=1, default=str)
            _atomic_write(record_path, lambda h, text=text: h.write(text.encode()))
            if record["status"] == "ok" and os.path.exists(checkpoint):
                os.remove(checkpoint)  # the result files now stand for the finished run
            records.append(record)
            bar.update(1)
    finally:
        bar.close()
        _write_summary(out, records)
    return records


def _write_summary(out, records):
    text = json.dumps(records, indent=1, default=str)
    _atomic_write(os.path.join(out, "summary.json"), lambda h: h.write(text.encode()))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(SUMMARY_COLUMNS)
    for record in records:
        writer.writerow(["x".join(map(str, record[c])) if c == "shape" and record.get(c) else
                         ("" if record.get(c) is None else record.get(c)) for c in SUMMARY_COLUMNS])
    _atomic_write(os.path.join(out, "summary.csv"), lambda h: h.write(table.getvalue().encode()))


# --------------------------------------------------------------------------- budget


def batch_weights_budget(m, n, jobs):
    """A batch job's random ``m x n`` weights (drawn, then scaled: two copies at once)
    and the MCBE run on them."""
    memory = [("random weights (drawn and scaled)", 2 * _budget.FLOAT_BYTES * m * n, "weights"),
              *((label, size, "weights") for label, size, _ in mcbe_budget(m, n, 1, jobs, data=False).memory)]
    return _budget.Budget("the batch job", "weights", m * n, "entries", 1, memory,
                  advice="Use smaller random weights (m, n), or run on a machine with more memory.")
