"""The ``fastrelu`` command line: ``bias``, ``check``, ``verify``, ``reconstruct``,
``svals``, ``width``, ``batch`` and ``demo``."""

import argparse
import json
import os
import sys
import time
import warnings
from typing import Callable, NamedTuple

import numpy as np

from fastrelu._batch.jobs import add_batch_parser
from fastrelu._runtime.distributed import add_cluster_arguments, cluster_from_args
from fastrelu._core.domains import Ball, Data, Shell, Sphere
from fastrelu._core.errors import BuildError, FastReluError
from fastrelu._core.io import check_output_directory, jsonable, load_array, output_directory, output_file, write_output
from fastrelu._core.layer import ReLULayer
from fastrelu._bias.mcbe import DEFAULT_SAMPLES, mcbe
from fastrelu._bias.pbe import pbe
from fastrelu._injectivity.pointwise import DEFAULT_CHECK_POINTS, check_bias, injectivity_summary
from fastrelu._reconstruct.driver import DEFAULT_MAX_ITER, DEFAULT_TOL, reconstruct
from fastrelu._injectivity.verify import verify_injective
from fastrelu._spectral.power import DEFAULT_STARTS as SVALS_DEFAULT_STARTS, relu_singular_values
from fastrelu._spectral.width import DEFAULT_DRAWS, DEFAULT_STARTS_PER_DRAW, gaussian_mean_width, local_metrics


def _domain_from_args(args, dim):
    if args.domain == "sphere":
        return Sphere(dim, 1.0 if args.radius is None else args.radius, args.nonnegative)
    if args.domain == "ball":
        return Ball(dim, 1.0 if args.radius is None else args.radius, args.nonnegative)
    if args.domain == "shell":
        if args.inner is None or args.outer is None:
            raise FastReluError("The shell domain needs both --inner and --outer radii.")
        return Shell(dim, args.inner, args.outer, args.nonnegative)
    if args.data is None:
        raise FastReluError("The data domain needs --data FILE (rows are the points).")
    return Data(load_array(args.data, "data", key=args.data_key, key_option="--data-key"))


def _json_float(x):
    return None if not np.isfinite(x) else float(x)


def _load_weights(args):
    weight = load_array(args.weights, "weights", key=args.key)
    if np.ndim(weight) != 2:
        raise FastReluError(f"The 'weights' file must hold a 2-D array. Got shape {np.shape(weight)}.")
    return weight


def _progress(args):
    return True if args.progress else (False if args.no_progress else None)


def _cmd_bias(args):
    out = None if args.out is None else output_file(args.out, "--out", ".npy")
    weight = _load_weights(args)
    domain = _domain_from_args(args, np.shape(weight)[1])
    if args.method == "pbe":
        result = pbe(weight, domain)
    else:
        samples = None if args.domain == "data" else (DEFAULT_SAMPLES if args.samples is None else args.samples)
        margin = args.margin
        if margin is not None and margin != "covering":
            try:
                margin = float(margin)
            except ValueError:
                raise FastReluError(f"The '--margin' option must be 'covering' or a number. Got {margin!r}.") from None
        result = mcbe(weight, domain, samples, seed=0 if args.seed is None else args.seed,
                      margin=margin, n_jobs=args.jobs, progress=_progress(args),
                      client=args.client, checkpoint=args.checkpoint,
                      checkpoint_interval=args.checkpoint_interval)
    if out:
        write_output(out, "--out", lambda path: np.save(path, result.alpha))
    summary = {
        "method": result.method,
        "domain": repr(result.domain),
        "shape": list(np.shape(weight)),
        "n_samples": result.n_samples,
        "seed": result.seed,
        "margin": result.margin,
        "elapsed": result.elapsed,
        "unconstrained": int(result.unconstrained.sum()),
        "n_incomplete": result.n_incomplete,
        "n_facets": None if result.facets is None else int(result.facets.shape[0]),
        "out": out,
    }
    if args.json:
        summary["alpha"] = [_json_float(a) for a in result.alpha]
        summary["counts"] = result.counts.tolist()
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        finite = result.alpha[np.isfinite(result.alpha)]
        if result.method == "pbe":
            print(f"PBE on {summary['domain']}: {summary['n_facets']} facets (exact, nothing "
                  f"sampled), {result.elapsed:.2f} s")
        else:
            print(f"MCBE on {summary['domain']}: {result.n_samples} samples, seed {result.seed}, "
                  f"{result.elapsed:.2f} s")
        if finite.size:
            print(f"alpha: min {finite.min():.6g}, median {np.median(finite):.6g}, max {finite.max():.6g}; "
                  f"{summary['unconstrained']} rows unconstrained")
        if out:
            print(f"alpha written to {out}")
    return 0


def _layer_from_args(args, weight):
    if args.bias is not None and args.affine_bias is not None:
        raise FastReluError("Give either --bias (alpha in ReLU(W x - alpha)) or --affine-bias (b in ReLU(W x + b)), not both.")
    if args.affine_bias is not None:
        return ReLULayer.from_affine(weight, _bias_value(args.affine_bias, "affine-bias", args.bias_key))
    bias = None if args.bias is None else _bias_value(args.bias, "bias", args.bias_key)
    return ReLULayer(weight, bias)


def _number(text):
    """``text`` as a float when it is written as one (``0.5``, ``-1e-3``, ``inf``), else
    ``None``. No file name that the loaders accept reads as a number: they end in .npy,
    .npz, .csv or .txt."""
    try:
        return float(text)
    except ValueError:
        return None


def _bias_value(text, name, key):
    """A bias option: a number (the same bias for every row) or a file of ``m`` values.
    A file may hold ``+inf`` (a row that is never active, as MCBE reports rows that no
    sample constrained); the layer refuses NaN."""
    number = _number(text)
    if number is not None:
        return number
    if not os.path.isfile(text):
        raise FastReluError(f"The '--{name}' option must be a number or a file of m values (.npy, .npz, .csv or .txt). Got {text!r}, which is neither a number nor a file.")
    bias = load_array(text, name, key=key, key_option="--bias-key")
    if np.ndim(bias) == 2 and 1 in np.shape(bias):
        return bias.ravel()  # a text file of one column (numpy.savetxt of a vector) or row
    return bias


def _cmd_check(args):
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    n = layer.shape[1]
    out = None
    if args.data is not None:
        out = None if args.out is None else output_file(args.out, "--out", ".npy")
        X = load_array(args.data, "data", key=args.data_key, key_option="--data-key")
        report = injectivity_summary(layer, X, rank_tol=args.rank_tol, n_jobs=args.jobs)
        failed = report.failures
        summary = {"domain": f"Data(points=<{report.n_points} x {n}>)", "seed": None,
                   "n_points": report.n_points, "n_injective": int(report.injective.sum()),
                   "failures": failed.tolist(), "failed_n_active": report.n_active[failed].tolist(),
                   "failed_rank": report.rank[failed].tolist()}
        labels = [f"point {i}" for i in failed]
        if out:
            write_output(out, "--out", lambda path: np.save(path, report.injective))
    else:
        domain = _domain_from_args(args, n)
        points = DEFAULT_CHECK_POINTS if args.points is None else args.points
        report = check_bias(layer, domain, points, seed=0 if args.seed is None else args.seed,
                            rank_tol=args.rank_tol, n_jobs=args.jobs, progress=_progress(args))
        summary = {"domain": repr(domain), "seed": report.seed, "n_points": report.n_points,
                   "n_injective": report.n_injective,
                   "failed_points": report.failed_points.tolist(),
                   "failed_n_active": report.failed_n_active.tolist(),
                   "failed_rank": report.failed_rank.tolist()}
        labels = [np.array2string(x, precision=4, separator=", ") for x in report.failed_points]
        failed = report.failed_n_active
    summary.update(fraction=summary["n_injective"] / summary["n_points"] if summary["n_points"] else None,
                   rank_tol=report.rank_tol, elapsed=report.elapsed, out=out)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        n_failed = summary["n_points"] - summary["n_injective"]
        print(f"{summary['n_injective']} of {summary['n_points']} points injective "
              f"({100 * (summary['fraction'] or 0):.4f}%) on {summary['domain']}"
              + (f", seed {summary['seed']}" if summary["seed"] is not None else "")
              + f", rank tolerance {report.rank_tol:g}, {report.elapsed:.2f} s")
        for label, active, rank in list(zip(labels, summary["failed_n_active"], summary["failed_rank"]))[:10]:
            print(f"  not injective: {label} ({active} active rows, rank {rank})")
        if n_failed > 10:
            print(f"  ... and {n_failed - 10} more")
        if out:
            print(f"per-point mask written to {out}")
    if args.strict and summary["n_injective"] < summary["n_points"]:
        return 1
    return 0


def _cmd_reconstruct(args):
    out = output_file(args.out, "--out", ".npy")
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    Y = load_array(args.outputs, "outputs", key=args.outputs_key, key_option="--outputs-key")
    result = reconstruct(layer, Y, args.method, cond=args.cond, tol=args.tol,
                         max_iter=args.max_iter, n_jobs=args.jobs)
    write_output(out, "--out", lambda path: np.save(path, result.x))
    ok = np.atleast_1d(result.ok)
    spans = np.atleast_1d(result.spans)
    failed = np.flatnonzero(~ok)
    not_spanning = np.flatnonzero(~spans)  # the outputs do not determine the input
    not_solved = np.flatnonzero(spans & ~ok)  # determined, but the solve missed its bound
    summary = {"method": result.method, "n_outputs": int(ok.size), "n_recovered": int(ok.sum()),
               "n_spanning": int(spans.sum()), "failed": failed.tolist(),
               "not_spanning": not_spanning.tolist(), "not_solved": not_solved.tolist(),
               "elapsed": result.elapsed, "out": out}
    cond = np.atleast_1d(result.cond)[ok]
    summary["cond_median"] = float(np.median(cond)) if cond.size else None
    summary["cond_max"] = float(cond.max()) if cond.size else None
    if result.iterations is not None:
        summary["converged"] = int(np.count_nonzero(result.converged))
        summary["iterations_max"] = int(np.max(result.iterations))
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(result.summary() + f" ({result.elapsed:.2f} s)")
        for indices, what in ((not_spanning, "not recoverable (the active rows do not span R^n)"),
                              (not_solved, "not solved to the stated accuracy (the active rows span; "
                                           "the residual stayed above its bound)")):
            if indices.size:
                shown = ", ".join(str(i) for i in indices[:10])
                print(f"  {what}: {shown}"
                      + (f" and {indices.size - 10} more" if indices.size > 10 else ""))
        print(f"inputs written to {out}")
    if args.strict and failed.size:
        return 1
    return 0


def _cmd_verify(args):
    weight = _load_weights(args)
    verdict = verify_injective(weight, max_subsets=args.max_subsets, n_jobs=args.jobs,
                               progress=_progress(args), client=args.client,
                               checkpoint=args.checkpoint,
                               checkpoint_interval=args.checkpoint_interval)
    m, n = np.shape(weight)
    witness = None if verdict.witness is None else [float(v) for v in verdict.witness]
    active = None if verdict.witness_active is None else [int(i) for i in verdict.witness_active]
    summary = {"injective": bool(verdict.injective), "shape": [int(m), int(n)],
               "min_active": int(verdict.min_active), "witness": witness,
               "witness_active": active, "subsets_checked": int(verdict.subsets_checked),
               "n_subsets": int(verdict.n_subsets), "n_exact": int(verdict.n_exact),
               "n_hyperplanes": int(verdict.n_hyperplanes),
               "general_position": bool(verdict.general_position),
               "subset": [int(i) for i in verdict.subset], "sign": int(verdict.sign),
               "vertex": [float(v) for v in verdict.vertex],
               "closed_form": bool(verdict.closed_form),
               "witness_margin": None if verdict.witness_margin is None else float(verdict.witness_margin),
               "elapsed": verdict.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        answer = "injective" if verdict.injective else "NOT injective"
        print(f"ReLU(W x) with W of shape {m} x {n} is {answer} on R^{n} (exact; "
              f"{verdict.subsets_checked} of {verdict.n_subsets} subsets, {verdict.elapsed:.2f} s)")
        if verdict.closed_form:  # m < 2n: the count at the witness, not a minimum
            print(f"at most {verdict.min_active} active rows at the witness (n = {n}; closed form, m < 2n)")
        else:
            print(f"least number of active rows over all directions: {verdict.min_active} (n = {n})")
        if witness is not None:
            shown = np.array2string(np.asarray(witness), precision=6, separator=", ")
            print(f"witness x = {shown}: its {len(active)} active rows {active} do not span R^{n}")
            if summary["witness_margin"] is not None:
                print(f"witness margin {summary['witness_margin']:.3g}: the distance of x to the "
                      f"nearest hyperplane <w_i, x> = 0 (every point that close has the same active rows)")
        if not verdict.general_position:
            print("rows not in general position: every cell was enumerated exactly")
        if verdict.n_exact:
            print(f"{verdict.n_exact} subsets re-decided beyond the floating-point filter")
    if args.strict and not verdict.injective:
        return 1
    return 0


def _compiled_kernels():
    """How many Numba kernel versions of fastrelu this process has compiled so far (the
    versions it loaded from the on-disk cache are not counted)."""
    from numba.core.dispatcher import Dispatcher

    seen, compiled = set(), 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fastrelu" or name.startswith("fastrelu.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and id(value) not in seen:
                seen.add(id(value))
                compiled += len(value.overloads) - sum(value.stats.cache_hits.values())
    return compiled


def _compile_note(compiled):
    """The line that says that the timings include compiling (None when nothing was)."""
    from fastrelu._core.jit import CACHE

    if not compiled:
        return None
    where = ("they are now cached on disk, so the next run skips this" if CACHE else
             "the disk cache is off (FASTRELU_NUMBA_CACHE=0), so every run compiles them")
    return f"(the seconds above include compiling {compiled} Numba kernels; {where})"


def _cmd_demo(args):
    compiled_before = _compiled_kernels()
    rng = np.random.default_rng(0)
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
    cases = [
        ("tetrahedron 4x3", tetrahedron, -1.0 / np.sqrt(3.0)),
        ("Gaussian 270x30", rng.standard_normal((270, 30)) / np.sqrt(30.0), None),
    ]
    rows = []
    for name, W, exact in cases:
        start = time.perf_counter()
        result = mcbe(W, Sphere(W.shape[1]), args.samples, seed=args.seed, n_jobs=args.jobs)
        wall = time.perf_counter() - start
        rows.append((name, result, exact, wall))
    compiled = _compiled_kernels() - compiled_before
    if args.json:
        json.dump([{"layer": name, "n_samples": r.n_samples, "seed": r.seed,
                    "alpha_min": float(r.alpha.min()), "alpha_max": float(r.alpha.max()),
                    "exact": exact, "elapsed": r.elapsed} for name, r, exact, _ in rows], sys.stdout)
        sys.stdout.write("\n")
        return 0
    print("MCBE maximal-bias estimates on the unit sphere (THEORY §3)")
    print(f"{'layer':<18}{'samples':>10}{'min alpha':>12}{'max alpha':>12}{'exact':>12}{'seconds':>10}{'us/sample':>11}")
    for name, r, exact, wall in rows:
        exact_text = f"{exact:.6f}" if exact is not None else "-"
        print(f"{name:<18}{r.n_samples:>10}{r.alpha.min():>12.6f}{r.alpha.max():>12.6f}"
              f"{exact_text:>12}{r.elapsed:>10.2f}{1e6 * r.elapsed / r.n_samples:>11.2f}")
    note = _compile_note(compiled)
    if note:
        print(note)
    return 0


def _cmd_svals(args):
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    data = None if args.data is None else load_array(args.data, "data", key=args.data_key, key_option="--data-key")
    result = relu_singular_values(layer.weight, args.k, bias=layer.bias, data=data,
                                  n_starts=args.starts, fit_steps=args.fit_steps,
                                  seed=0 if args.seed is None else args.seed, n_jobs=args.jobs,
                                  client=args.client, checkpoint=args.checkpoint,
                                  checkpoint_interval=args.checkpoint_interval)
    domain = "unit ball" if data is None else repr(result.domain)
    summary = {"k": result.k, "domain": domain, "shape": list(layer.shape),
               "values": [float(v) for v in result.values], "kinds": list(result.kinds),
               "upper": [float(v) for v in result.upper], "sigma": [float(v) for v in result.sigma],
               "seed": result.seed, "n_starts": None if data is not None else args.starts,
               "elapsed": result.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
        return 0
    m, n = layer.shape
    print(f"ReLU singular values of a {m} x {n} layer on the {domain}, seed {result.seed}, "
          f"{result.elapsed:.2f} s")
    print(f"{'j':>3}{'s_j':>14}  {'what it is':<22}{'rigorous bound':>16}{'sigma_j':>14}")
    for j in range(result.k):
        print(f"{j + 1:>3}{result.values[j]:>14.6g}  {result.kinds[j]:<22}{result.upper[j]:>16.6g}"
              f"{result.sigma[j]:>14.6g}")
    return 0


def _cmd_width(args):
    out = None if args.out is None else output_file(args.out, "--out", ".npz")
    weight = _load_weights(args)
    seed = 0 if args.seed is None else args.seed
    data = None if args.data is None else load_array(args.data, "data", key=args.data_key, key_option="--data-key")
    if args.linear:
        what = "W B (the linear map on the unit ball)"
        result = gaussian_mean_width(weight, n_draws=args.draws, seed=seed, n_jobs=args.jobs,
                                     progress=_progress(args),
                                     client=args.client, checkpoint=args.checkpoint,
                                     checkpoint_interval=args.checkpoint_interval)
    elif args.local:
        if data is None:
            raise FastReluError("The '--local' option needs --data FILE (the points at which D_x W is measured).")
        layer = _layer_from_args(args, weight)
        metrics = local_metrics(layer, data, n_jobs=args.jobs)
        if out:
            write_output(out, "--out", lambda path: np.savez(
                path, width=metrics.width, sigma_max=metrics.sigma_max,
                sigma_min=metrics.sigma_min, rank=metrics.rank, n_active=metrics.n_active))
        stats = {}
        for name in ("width", "sigma_max", "sigma_min"):
            values = getattr(metrics, name)
            stats[name] = {"min": _json_float(values.min()) if values.size else None,
                           "mean": _json_float(values.mean()) if values.size else None,
                           "max": _json_float(values.max()) if values.size else None}
        summary = {"local": True, "n_points": metrics.n_points,
                   "n_full_rank": int(np.count_nonzero(metrics.rank == layer.shape[1])),
                   "tol": metrics.tol, "elapsed": metrics.elapsed, "out": out, **stats}
        if args.json:
            json.dump(summary, sys.stdout)
            sys.stdout.write("\n")
            return 0
        print(f"local maps D_x W at {metrics.n_points} points ({metrics.elapsed:.2f} s): "
              f"{summary['n_full_rank']} of rank {layer.shape[1]} (tolerance {metrics.tol:.3g})")
        for name in ("width", "sigma_max", "sigma_min"):
            s = stats[name]
            if s["min"] is not None:
                print(f"  {name:<10} min {s['min']:.6g}  mean {s['mean']:.6g}  max {s['max']:.6g}")
        if out:
            print(f"per-point metrics written to {out}")
        return 0
    else:
        layer = _layer_from_args(args, weight)
        what = "the layer's image of " + ("the unit ball" if data is None else f"{np.shape(data)[0]} data points")
        result = gaussian_mean_width(layer, data=data, n_draws=args.draws, n_starts=args.starts,
                                     seed=seed, n_jobs=args.jobs, progress=_progress(args),
                                     client=args.client, checkpoint=args.checkpoint,
                                     checkpoint_interval=args.checkpoint_interval)
    summary = {"of": what, "value": result.value, "stderr": result.stderr,
               "n_draws": result.n_draws, "per_draw": result.per_draw, "method": result.method,
               "seed": result.seed, "elapsed": result.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"Gaussian mean width of {what}: {result.value:.6g} +- {result.stderr:.2g} "
              f"(standard error; {result.n_draws} draws, seed {result.seed}, {result.elapsed:.2f} s)")
        print(f"  supremum per draw: {result.per_draw} ({result.method})")
    return 0


def _cmd_report(args):
    from fastrelu._networks.network import Network
    from fastrelu._networks.report import analyze, save_report

    check_output_directory(args.out, "--out", "option")  # created once the inputs are read
    if args.model == "digits":
        from fastrelu._networks.digits import digits_model

        built = digits_model(seed=args.seed)
        network, X, y, fit = built.network, built.X_test, built.y_test, built.X_train
    else:
        if args.data is None:
            raise FastReluError("The 'report' command needs --data FILE (the network inputs to analyse, N x n).")
        network = Network.load(args.model)
        X = load_array(args.data, "data", key=args.data_key, key_option="--data-key")
        y = None if args.labels is None else load_array(args.labels, "--labels", key_option=None, numeric=False)
        fit = None if args.fit_data is None else load_array(args.fit_data, "fit-data", key_option=None)
        if y is not None:
            y = _labels_for(y, network, X)
    enlarge = None if args.enlarge == "none" else args.enlarge
    with warnings.catch_warnings():
        # _labels_for has said it naming --labels; analyze would say it again naming y
        warnings.filterwarnings("ignore", message=r"\d+ of the \d+ labels in 'y' ", category=UserWarning)
        report = analyze(network, X, y=y, fit_data=fit, samples=args.samples, seed=args.seed,
                         enlarge=enlarge, n_jobs=args.jobs)
    output_directory(args.out, "--out", "option")
    paths, note = save_report(report, args.out, plots=not args.no_plots)
    if note:
        print(f"fastrelu: warning: {note}", file=sys.stderr)
    if args.json:
        # The per-neuron and per-point arrays stay in the files; stdout gets the summary
        layers = [{k: v for k, v in layer.to_dict().items() if k not in ("bias", "estimates")}
                  for layer in report.layers]
        json.dump(jsonable({"layers": layers, "auc": report.auc, "accuracy": report.accuracy,
                            "files": paths, "elapsed": report.elapsed}), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(report.summary())
        print(f"written: {', '.join(paths)} ({report.elapsed:.1f} s)")
    return 0


def _labels_for(y, network, X):
    """The ``--labels`` array as :func:`fastrelu.analyze` takes it, checked here so that
    the errors and the warning name ``--labels``: one label per point of ``--data``, in a
    1-D array or in one column or row (a text file of a vector loads as one column),
    and labels among the network's classes (a warning when only some are)."""
    from fastrelu._networks.report import listed

    if np.ndim(y) == 2 and 1 in np.shape(y):
        y = y.ravel()
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # a text file of integer labels loads as floats
    n_points = np.shape(X)[0] if np.ndim(X) == 2 else None  # else analyze refuses --data
    if np.ndim(y) != 1 or (n_points is not None and y.shape[0] != n_points):
        expected = "one label per point of --data" + ("" if n_points is None else f" ({n_points})")
        raise FastReluError(f"The '--labels' file must hold {expected}: a 1-D array, one column or one row. Got an array of shape {np.shape(y)}.")
    if network.output is None:
        raise FastReluError("The '--labels' option needs a network with an output layer (correctness is the argmax of its output). This network ends with a ReLU layer.")
    classes, kind = network.classes, "classes"
    if classes is None:  # the predictions are the output unit indices
        units = network.output.shape[0]
        classes = np.arange(2 if units == 1 else units)
        kind = "output unit indices (the network has no classes)"
    known = np.isin(y, classes)
    if not known.any():
        raise FastReluError(f"The '--labels' file must hold labels among the network's {kind} {listed(classes)}. Got labels {listed(np.unique(y))}, none of them a class: every prediction would count as wrong.")
    if not known.all():
        warnings.warn(f"{int((~known).sum())} of the {y.shape[0]} labels in --labels are not among the network's {kind} {listed(classes)} (labels {listed(np.unique(y[~known]))}): those points count as incorrectly classified.", UserWarning, stacklevel=2)
    return y


#: Keyword arguments of run_experiment that are options of their own, never --set.
_EXPERIMENT_OPTIONS = {"name": "NAME", "out": "--out", "seed": "--seed", "quick": "--quick",
                       "n_jobs": "--jobs", "progress": "--progress", "figures": "--no-figures"}


def _cmd_experiment(args):
    from fastrelu._experiments.experiments import describe_experiment, run_experiment

    overrides = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FastReluError(f"The '--set' option must be KEY=VALUE with VALUE in JSON (e.g. repetitions=10 or sample_counts=[10,100]). Got {item!r} instead.")
        if key in _EXPERIMENT_OPTIONS:
            raise FastReluError(f"The '--set' option must not set {key!r}: use {_EXPERIMENT_OPTIONS[key]}. Got {item!r} instead.")
        try:
            overrides[key] = json.loads(text)
        except ValueError:
            overrides[key] = text  # a bare word such as covering
    record = run_experiment(args.name, args.out, seed=args.seed, quick=args.quick,
                            n_jobs=args.jobs, progress=_progress(args),
                            figures=not args.no_figures, **overrides)
    if args.json:
        json.dump(record, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print("\n".join(describe_experiment(record)))
    if args.out:
        written = [record["json"], *record["figures"]]
        print(f"written to {args.out}: {', '.join(written)}")
    return 0


def _weights_arguments(parser):
    parser.add_argument("weights", help="weight matrix W (m x n): .npy, .npz, .csv or .txt")
    parser.add_argument("--key", help="array name inside an .npz weights file")


def _bias_arguments(parser):
    parser.add_argument("--bias", metavar="NUMBER|FILE",
                        help="the subtracted bias alpha of ReLU(W x - alpha): a number (the same "
                             "for every row) or a file of m values, +inf for a row that is never "
                             "active (default 0)")
    parser.add_argument("--affine-bias", metavar="NUMBER|FILE",
                        help="instead: the b of ReLU(W x + b), a number or a file of m values")
    parser.add_argument("--bias-key", help="array name inside an .npz bias file")


def _domain_arguments(parser, *, data_domain):
    choices = ["sphere", "ball", "shell", "data"] if data_domain else ["sphere", "ball", "shell"]
    parser.add_argument("--domain", choices=choices, default="sphere", help="domain (default sphere)")
    parser.add_argument("--radius", type=float, help="radius of the sphere or ball (default 1)")
    parser.add_argument("--inner", type=float, help="inner radius of the shell")
    parser.add_argument("--outer", type=float, help="outer radius of the shell")
    parser.add_argument("--nonnegative", action="store_true", help="restrict the domain to the nonnegative orthant")
    parser.add_argument("--data", help="data points (N x n)" + (" for --domain data" if data_domain else " (instead of a sampled domain)"))
    parser.add_argument("--data-key", help="array name inside an .npz data file")


def _run_arguments(parser, *, progress=True):
    parser.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    if progress:
        bar = parser.add_mutually_exclusive_group()
        bar.add_argument("--progress", action="store_true", help="always show a progress bar on stderr (default: when stderr is a terminal)")
        bar.add_argument("--no-progress", action="store_true", help="never show a progress bar")


# Options that apply only in some modes of their command. One given where it does not
# apply is refused, naming the option and the choice that excludes it, rather than
# silently ignored. "Given" means written on the command line: build_parser sets every
# option's default to None and main fills the defaults in after this check, so that an
# option given its default value is seen too.


class _When(NamedTuple):
    """Where an option applies: ``where`` completes "applies only ...", ``test(args,
    given)`` says whether it does, ``got(args, given)`` names the choice made instead
    (``given``: the destinations of the options on the command line)."""

    where: str
    test: Callable
    got: Callable


def _shown(args, given, dest, option):
    value = getattr(args, dest)
    if value is True:
        return option
    return f"{option} {value}" + ("" if dest in given else " (the default)")


def _is(dest, option, *values):
    """Applies when the option ``dest`` is one of ``values``."""
    names = values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    return _When(f"to {option} {names}", lambda a, g: getattr(a, dest) in values,
                 lambda a, g: _shown(a, g, dest, option))


def _with(dest, option):
    """Applies when the option ``dest`` is given."""
    return _When(f"with {option}", lambda a, g: dest in g, lambda a, g: f"no {option}")


def _without(*pairs):
    """Applies when none of the options ``(dest, option)`` is given."""
    def got(a, g):
        dest, option = next((d, o) for d, o in pairs if d in g)
        return _shown(a, g, dest, option)
    return _When("without " + " or ".join(o for _, o in pairs),
                 lambda a, g: not any(d in g for d, _ in pairs), got)


def _npz(*pairs):
    """Applies when a file given to one of the options ``(dest, option)`` is an .npz
    archive (an array name inside it)."""
    def test(a, g):
        return any(str(getattr(a, d) or "").lower().endswith(".npz") for d, _ in pairs)

    def got(a, g):
        named = [(d, o) for d, o in pairs if getattr(a, d) is not None]
        if not named:
            return "no " + " or ".join(o for _, o in pairs)
        return f"{named[0][1]} {getattr(a, named[0][0])}"
    return _When("to an .npz " + " or ".join(o for _, o in pairs) + " file", test, got)


_SAMPLED = _is("domain", "--domain", "sphere", "ball", "shell")
_KEYS = {"key": _npz(("weights", "weights")),
         "bias_key": _npz(("bias", "--bias"), ("affine_bias", "--affine-bias")),
         "data_key": _npz(("data", "--data")),
         "outputs_key": _npz(("outputs", "--outputs"))}
_NO_CLUSTER = _without(("scheduler", "--scheduler"), ("local_cluster", "--local-cluster"))
_CLUSTER = [("scheduler_timeout", _with("scheduler", "--scheduler")),
            ("checkpoint_interval", _with("checkpoint", "--checkpoint"))]

#: Per command: (options, where they apply), checked in order; the first rule an option
#: breaks is reported. Options not listed apply in every mode of their command.
APPLICABILITY = {
    "bias": [
        ("radius", _is("domain", "--domain", "sphere", "ball")),
        (("inner", "outer"), _is("domain", "--domain", "shell")),
        ("nonnegative", _SAMPLED),
        ("data", _is("domain", "--domain", "data")),
        # PBE is exact for the hull's facets: it samples nothing and runs in one thread
        (("samples", "seed", "margin", "checkpoint", "checkpoint_interval", "scheduler",
          "local_cluster", "jobs", "progress", "no_progress"), _is("method", "--method", "mcbe")),
        # every point of --data is used once: nothing is drawn or corrected
        (("samples", "seed", "margin"), _SAMPLED),
        ("jobs", _NO_CLUSTER),  # on a cluster each worker thread runs one task
        *_CLUSTER,
    ],
    "check": [
        (("domain", "radius", "inner", "outer", "nonnegative", "points", "seed", "progress",
          "no_progress"), _without(("data", "--data"))),
        ("radius", _is("domain", "--domain", "sphere", "ball")),
        (("inner", "outer"), _is("domain", "--domain", "shell")),
        ("out", _with("data", "--data")),  # sampled points are not stored
    ],
    "reconstruct": [
        ("cond", _is("method", "--method", "dual", "basis")),  # frame: always exact
        ("max_iter", _is("method", "--method", "frame")),  # --tol bounds every method's residual
    ],
    "verify": [("jobs", _NO_CLUSTER), *_CLUSTER],  # on a cluster each worker thread runs one task
    "svals": [
        # on data s_1 is exact: no power iteration to start, distribute or checkpoint
        # (and on data nothing uses --jobs: the distances and the fits are NumPy products)
        (("starts", "scheduler", "local_cluster", "checkpoint", "jobs"), _without(("data", "--data"))),
        # on a cluster the power iteration ignores --jobs; the fits (-k 2 or more) run here
        ("jobs", _When("without --scheduler or --local-cluster, or with -k 2 or more (the low-rank fits)",
                       lambda a, g: a.k >= 2 or _NO_CLUSTER.test(a, g),
                       lambda a, g: f"{_NO_CLUSTER.got(a, g)} with -k {a.k}")),
        ("fit_steps", _When("to -k 2 or more (the low-rank fits)", lambda a, g: a.k >= 2,
                            lambda a, g: f"-k {a.k}")),
        ("seed", _When("on the unit ball or with -k 2 or more (s_1 on data is exact)",
                       lambda a, g: a.data is None or a.k >= 2,
                       lambda a, g: f"--data with -k {a.k}")),
        *_CLUSTER,
    ],
    "width": [
        (("bias", "affine_bias", "bias_key", "data", "starts"), _without(("linear", "--linear"))),
        (("draws", "starts", "seed", "scheduler", "local_cluster", "checkpoint", "progress",
          "no_progress"), _without(("local", "--local"))),  # nothing is drawn
        ("starts", _without(("data", "--data"))),  # exact per draw on a finite set
        ("out", _with("local", "--local")),
        ("jobs", _NO_CLUSTER),  # on a cluster each worker thread runs one task
        *_CLUSTER,
    ],
    "report": [
        (("data", "data_key", "labels", "fit_data"),
         _When("to a network file (the built-in 'digits' model brings its own data)",
               lambda a, g: a.model != "digits", lambda a, g: "the model digits")),
    ],
    "experiment": [("no_figures", _with("out", "--out"))],  # nothing is written without it
    "batch": [("scheduler_timeout", _with("scheduler", "--scheduler")), ("jobs", _NO_CLUSTER)],
    "demo": [],
}


def _option_names(parser):
    """Destination -> the option as written (``--max-iter``; ``weights`` for a positional)."""
    names = {}
    for action in parser._actions:
        strings = action.option_strings
        names[action.dest] = max(strings, key=len) if strings else action.dest
    return names


def _defer_defaults(parser):
    """Set every option default of ``parser`` to None and return the defaults: an option
    is then on the command line exactly when its value is not None (or a flag's True)."""
    deferred = {}
    for action in parser._actions:
        default = action.default
        if (action.option_strings and default is not None and default is not False
                and default is not argparse.SUPPRESS and not isinstance(default, list)):
            deferred[action.dest] = default
            action.default = None
    return deferred


def _resolve_options(parser, args):
    """Fill in the defaults that build_parser deferred and return the message for the
    first option given where it does not apply (None when every one applies)."""
    command = parser.commands[args.command]
    given = {dest for dest, value in vars(args).items()
             if value is not None and value is not False and value != []}
    for dest, default in command.deferred_defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    names = _option_names(command)
    for dests, when in [*_KEYS.items(), *APPLICABILITY[args.command]]:
        for dest in (dests,) if isinstance(dests, str) else dests:
            if dest in given and dest in names and not when.test(args, given):
                return f"{names[dest]} applies only {when.where}; got {when.got(args, given)}"
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line, like every other error of the CLI (exit
    code 2); ``--help`` still prints the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(prog="fastrelu", description="Frame-theoretic analysis of ReLU layers ReLU(W x - alpha).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    bias = sub.add_parser("bias", help="estimate a bias under which the layer is injective on a domain (MCBE or PBE)")
    _weights_arguments(bias)
    bias.add_argument("--method", choices=["mcbe", "pbe"], default="mcbe",
                      help="mcbe: Monte Carlo most correlated bases (default); pbe: polytope facets (n <= 8, exact)")
    _domain_arguments(bias, data_domain=True)
    bias.add_argument("--samples", type=int, default=None, help=f"number of sampled directions (mcbe; default {DEFAULT_SAMPLES})")
    bias.add_argument("--seed", type=int, default=None, help="random seed (mcbe; default 0)")
    bias.add_argument("--margin", help="covering-radius correction (mcbe): 'covering' or a radius")
    bias.add_argument("--out", help="write alpha to this .npy file")
    _run_arguments(bias)
    add_cluster_arguments(bias)
    bias.set_defaults(run=_cmd_bias)

    check = sub.add_parser("check", help="pointwise injectivity of a layer on data or on fresh points of a domain")
    _weights_arguments(check)
    _bias_arguments(check)
    _domain_arguments(check, data_domain=False)
    check.add_argument("--points", type=int, default=None, help=f"fresh points of the domain (default {DEFAULT_CHECK_POINTS})")
    check.add_argument("--seed", type=int, default=None, help="seed of the fresh points (default 0)")
    check.add_argument("--rank-tol", type=float, default=1e-6, help="rank tolerance (default 1e-6)")
    check.add_argument("--out", help="with --data: write the per-point boolean mask to this .npy file")
    check.add_argument("--strict", action="store_true", help="exit with status 1 when some point is not injective")
    _run_arguments(check)
    check.set_defaults(run=_cmd_check)

    rec = sub.add_parser("reconstruct", help="recover the inputs of a layer from its outputs")
    _weights_arguments(rec)
    _bias_arguments(rec)
    rec.add_argument("--outputs", required=True, help="layer outputs Y (N x m, or one row)")
    rec.add_argument("--outputs-key", help="array name inside an .npz outputs file")
    rec.add_argument("--out", required=True, help="write the recovered inputs to this .npy file")
    rec.add_argument("--method", choices=["dual", "basis", "frame"], default="dual",
                     help="dual: canonical dual of the active rows (default); basis: n active rows; frame: frame algorithm")
    rec.add_argument("--cond", choices=["estimate", "exact"], default="estimate", help="condition numbers: LAPACK-style estimate (default) or exact")
    rec.add_argument("--tol", type=float, default=DEFAULT_TOL, help=f"relative residual an input must meet to count as recovered: the frame algorithm's stopping tolerance, the least accepted bound of the direct methods (default {DEFAULT_TOL:g})")
    rec.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER, help=f"frame algorithm steps at most (default {DEFAULT_MAX_ITER})")
    rec.add_argument("--strict", action="store_true", help="exit with status 1 when some input is not recoverable")
    rec.add_argument("--jobs", type=int, default=None, help="threads (default: all cores)")
    rec.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    rec.set_defaults(run=_cmd_reconstruct)

    svals = sub.add_parser("svals", help="ReLU singular values s_1..s_k on the unit ball or on data, with what each number is")
    _weights_arguments(svals)
    svals.add_argument("-k", type=int, required=True, help="how many ReLU singular values (1 <= k <= min(m, n))")
    _bias_arguments(svals)
    svals.add_argument("--data", help="data points (N x n): the domain (default: the unit ball)")
    svals.add_argument("--data-key", help="array name inside an .npz data file")
    svals.add_argument("--starts", type=int, default=SVALS_DEFAULT_STARTS, help=f"power-iteration starts for s_1 on the ball (default {SVALS_DEFAULT_STARTS})")
    svals.add_argument("--fit-steps", type=int, default=200, help="optimiser steps per round of the low-rank fits (default 200)")
    svals.add_argument("--seed", type=int, default=None, help="random seed of the starts and of the fits' points (default 0)")
    _run_arguments(svals, progress=False)  # relu_singular_values shows no progress bar
    add_cluster_arguments(svals)
    svals.set_defaults(run=_cmd_svals)

    width = sub.add_parser("width", help="Gaussian mean width of a layer's image (ball or data), of W B (--linear), or per point (--local)")
    _weights_arguments(width)
    _bias_arguments(width)
    width.add_argument("--data", help="data points (N x n): measure their image (default: the unit ball's)")
    width.add_argument("--data-key", help="array name inside an .npz data file")
    kind = width.add_mutually_exclusive_group()
    kind.add_argument("--linear", action="store_true", help="the width of W B, the linear map on the unit ball")
    kind.add_argument("--local", action="store_true", help="per point of --data: width and singular values of D_x W")
    width.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help=f"Gaussian draws (default {DEFAULT_DRAWS})")
    width.add_argument("--starts", type=int, default=DEFAULT_STARTS_PER_DRAW, help=f"ascent starts per draw, layer on the ball (default {DEFAULT_STARTS_PER_DRAW})")
    width.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    width.add_argument("--out", help="with --local: write the per-point metrics to this .npz file")
    _run_arguments(width)
    add_cluster_arguments(width)
    width.set_defaults(run=_cmd_width)

    verify = sub.add_parser("verify", help="decide exactly whether ReLU(W x) (zero bias) is injective on R^n")
    _weights_arguments(verify)
    verify.add_argument("--max-subsets", type=int, default=None,
                        help="refuse inputs with more (n-1)-subsets than this (default: by dimension, see docs/injectivity.md)")
    verify.add_argument("--strict", action="store_true", help="exit with status 1 when the layer is not injective")
    _run_arguments(verify)
    add_cluster_arguments(verify)
    verify.set_defaults(run=_cmd_verify)

    report = sub.add_parser("report", help="layer-by-layer injectivity, bias, reconstruction and spectral report of a ReLU network on data")
    report.add_argument("model", help="network file (.npz, .safetensors, .pt/.pth, .joblib/.pkl) or 'digits' for the built-in digits MLP")
    report.add_argument("--data", help="network inputs to analyse (N x n)")
    report.add_argument("--data-key", help="array name inside an .npz data file")
    report.add_argument("--labels", help="class labels of the data (N,): measure how metrics separate correct from incorrect predictions")
    report.add_argument("--fit-data", help="points to fit the data-driven estimates on (default: half of --data)")
    report.add_argument("--out", required=True, help="directory for report.json, samples.npz and the figures")
    report.add_argument("--samples", type=int, default=100_000, help="MCBE samples on the ball per layer (default 100000)")
    report.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    report.add_argument("--enlarge", choices=["kde", "blowup", "none"], default="kde", help="synthetic points near the data for the enlarged-data estimate (default kde)")
    report.add_argument("--no-plots", action="store_true", help="write no figures")
    report.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    report.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    report.set_defaults(run=_cmd_report)

    experiment = sub.add_parser("experiment", help="run one of the papers' experiments (tetrahedron, evolution, redundancy): JSON and figures")
    experiment.add_argument("name", help="tetrahedron, evolution or redundancy (see docs/experiments.md)")
    experiment.add_argument("--out", help="directory for NAME.json and the figures NAME_*.png (nothing is written without it)")
    experiment.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    experiment.add_argument("--quick", action="store_true", help="the reduced size used by the tests")
    experiment.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="change a parameter, VALUE in JSON (e.g. --set repetitions=10); repeatable")
    experiment.add_argument("--no-figures", action="store_true", help="write the JSON only")
    _run_arguments(experiment)
    experiment.set_defaults(run=_cmd_experiment)

    add_batch_parser(sub)

    demo = sub.add_parser("demo", help="run MCBE on built-in layers and print a short table")
    demo.add_argument("--samples", type=int, default=200_000, help="samples per layer (default 200000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the samples (default 0)")
    demo.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    demo.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    demo.set_defaults(run=_cmd_demo)

    parser.commands = sub.choices
    for command in sub.choices.values():
        command.deferred_defaults = _defer_defaults(command)
    return parser


#: Exit status when the reader of stdout went away early (``fastrelu demo | head -1``):
#: 128 + SIGPIPE (13), the status a shell reports for a program that the signal ended,
#: so that ``set -o pipefail`` sees what it sees for other tools. It differs from 1
#: (``--strict``: a negative answer) and 2 (bad input).
EXIT_BROKEN_PIPE = 141


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Every warning of a command as one line on stderr, without Python's file and line."""
    text = " ".join(str(message).split())
    print(f"fastrelu: warning: {text}", file=sys.stderr)


def _silence_stdout():
    """Point the file descriptor of stdout at the null device, so that the interpreter's
    flush at exit of what is still buffered does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


def main(argv=None):
    """Run the command line; returns the exit status: 0 done, 1 a negative answer under
    ``--strict``, 2 bad input (one line on stderr), 130 interrupted and
    :data:`EXIT_BROKEN_PIPE` when the reader of stdout closed it early (nothing more is
    written, no traceback)."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = _main(argv)
            sys.stdout.flush()  # a closed pipe shows here at the latest, not at exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    refusal = _resolve_options(parser, args)
    if refusal:
        prog = parser.commands[args.command].prog
        print(f"{prog}: error: {refusal}; see '{prog} --help'", file=sys.stderr)
        return 2
    try:
        with cluster_from_args(args) as client:
            args.client = client
            return args.run(args)
    except (FastReluError, BuildError) as exc:
        if args.debug:
            raise
        print(f"fastrelu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastrelu: interrupted", file=sys.stderr)
        return 130
