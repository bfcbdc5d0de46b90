"""Layer-by-layer reports on whole networks: injectivity, maximal biases, reconstruction,
spectral measures and per-sample local metrics."""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fastrelu._bias.enlarge import METHODS as ENLARGE_METHODS
from fastrelu._bias.enlarge import bandwidth_value, enlarge_data
from fastrelu._bias.mcbe import mcbe
from fastrelu._bias.pbe import pbe
from fastrelu._core.domains import Ball, Data
from fastrelu._core.errors import FastReluError
from fastrelu._core.frames import frame_bounds, is_frame, spectral_norm
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import as_matrix, positive_float, positive_int, seed_value
from fastrelu._injectivity.pointwise import injectivity_summary
from fastrelu._networks.results import LayerReport, NetworkReport
from fastrelu._reconstruct.driver import INVERT_ZERO_TOL, invert_layers, reconstruct
from fastrelu._runtime.parallel import Stopwatch, progress_bar
from fastrelu._runtime.seeds import SPLIT_STREAM, block_generator
from fastrelu._spectral.power import relu_power_iteration
from fastrelu._spectral.width import gaussian_mean_width, local_metrics_with_norm

DEFAULT_SAMPLES = 100_000
DEFAULT_WIDTH_DRAWS = 2_000
DEFAULT_POWER_STARTS = 32
#: Largest input dimension for which PBE is attempted.
DEFAULT_PBE_DIM = 6
#: Per-sample metrics whose separation of correct from incorrect predictions is measured.
AUC_METRICS = ("n_active", "rank", "sigma_min", "sigma_max", "width", "cond")


def _network(network):
    # Imported here: the loaders pull in optional packages only when used.
    from fastrelu._networks.network import Network
    if not isinstance(network, Network):
        raise FastReluError(f"The 'network' parameter must be a fastrelu.Network (see Network.from_sklearn, Network.load). Got {type(network).__name__} instead.")
    return network


def _auc(score, correct):
    """``P(score(correct) > score(incorrect))`` with ties counted half."""
    good, bad = score[correct], score[~correct]
    good, bad = good[~np.isnan(good)], bad[~np.isnan(bad)]  # inf (never spanning) ranks last
    if good.size == 0 or bad.size == 0:
        return float("nan")
    u = stats.mannwhitneyu(good, bad, alternative="two-sided").statistic
    return float(u) / (good.size * bad.size)


def _labels(y, N):
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != N:
        raise FastReluError(f"The 'y' parameter must be a 1-D array of {N} labels (one per data point). Got y.shape={y.shape}.")
    return y


def listed(values, limit=10):
    values = np.asarray(values).tolist()
    return f"{values[:limit]}{' ...' if len(values) > limit else ''}"


def _check_classes(y, network):
    """Labels that no prediction can equal are a caller's error: refuse ``y`` when none
    of its labels is a class of the network, warn when some are not."""
    classes = network.classes
    if classes is None:  # predictions are the output unit indices
        units = network.output.shape[0]
        classes = np.arange(2 if units == 1 else units)
        kind = "output unit indices (the network has no classes)"
    else:
        kind = "classes"
    known = np.isin(y, classes)
    if known.all():
        return
    unknown = np.unique(y[~known])
    if not known.any():
        raise FastReluError(f"The 'y' parameter must hold labels among the network's {kind} {listed(classes)}. Got labels {listed(np.unique(y))}, none of them a class: every prediction would count as wrong.")
    warnings.warn(f"{int((~known).sum())} of the {y.shape[0]} labels in 'y' are not among the network's {kind} {listed(classes)} (labels {listed(unknown)}): those points count as incorrectly classified.", UserWarning, stacklevel=3)


def _reduced_layers(hidden):
    """The hidden layers without their zero rows, computing the same network.

    A zero row ``i`` of layer ``k`` outputs the constant ``c_i = ReLU(-alpha_i)``: it
    carries no information, and the estimators and solvers refuse it. Dropping it and
    moving ``W_{k+1}[:, i] c_i`` into the next layer's bias leaves every other output
    unchanged. Returns the reduced layers and, per layer, the indices of the rows kept.
    """
    layers, kept = [], []
    columns, constants = None, None
    for layer in hidden:
        W, alpha = layer.weight, layer.bias
        if columns is not None:
            alpha = alpha - W[:, ~columns] @ constants
            W = W[:, columns]
        nonzero = np.linalg.norm(layer.weight, axis=1) > 0
        layers.append(ReLULayer(W[nonzero], alpha[nonzero]))
        kept.append(np.flatnonzero(nonzero))
        columns, constants = nonzero, np.maximum(-layer.bias[~nonzero], 0.0)
    return layers, kept


def _estimates(W, fit, enlarged, seed, samples, pbe_dim, jobs, progress):
    """The maximal-bias estimates of the rows ``W`` (no zero rows) of a layer."""
    m, n = W.shape
    estimates, skipped = {}, {}
    if not is_frame(W):
        reason = f"the rows do not span R^{n}: the layer is injective nowhere"
        return estimates, {name: reason for name in ("data", "data_enlarged", "ball", "pbe")}
    if fit.shape[0]:
        estimates["data"] = mcbe(W, Data(fit), n_jobs=jobs, progress=progress).alpha
        if enlarged is not None:
            estimates["data_enlarged"] = mcbe(W, enlarged, n_jobs=jobs, progress=progress).alpha
        radius = float(np.linalg.norm(fit, axis=1).max())
    else:
        skipped["data"] = "no fitting points"
        radius = 0.0
    if radius > 0:
        nonnegative = bool((fit >= 0).all())
        estimates["ball"] = mcbe(W, Ball(n, radius, nonnegative), samples, seed=seed,
                                 n_jobs=jobs, progress=progress).alpha
        if n > pbe_dim:
            skipped["pbe"] = f"input dimension {n} above pbe_dim={pbe_dim}"
        else:
            try:
                estimates["pbe"] = pbe(W, Ball(n, radius)).alpha
            except FastReluError as exc:
                skipped["pbe"] = str(exc)
    else:
        reason = "no fitting points" if fit.shape[0] == 0 else "the fitting points are all zero"
        skipped["ball"] = skipped["pbe"] = reason
    return estimates, skipped


def analyze(network, X, *, y=None, fit_data=None, samples=DEFAULT_SAMPLES, seed=0,
            enlarge="kde", enlarge_points=None, bandwidth="scott", noise=0.1,
            width_draws=DEFAULT_WIDTH_DRAWS, power_starts=DEFAULT_POWER_STARTS,
            pbe_dim=DEFAULT_PBE_DIM, n_jobs=None, progress=None):
    """Analyse every hidden layer of a ReLU network on data.

    For hidden layer ``k`` with the data as they reach it: its frame bounds; its learned
    bias against the maximal-bias estimates (MCBE on the fitting data, on the fitting
    data enlarged by synthetic points, on the ball of the data's radius; PBE for small
    input dimension) and the fraction of neurons above each; pointwise injectivity on the
    data; on held-out points, the fraction kept injective by the learned bias and by each
    estimate; recovery of the network input from the layer's output; ``s_1`` and the
    Gaussian mean width of the data in and out; per point, the local metrics of
    ``D_x W`` (THEORY §8). With labels, how well each per-point metric separates correct
    from incorrect predictions (ROC AUC). See :class:`LayerReport` and
    :class:`NetworkReport` for what each number is.

    Parameters
    ----------
    network : Network
        The network; its hidden layers are analysed.
    X : array_like, shape (N, n)
        The data (network inputs). Per-point metrics are computed for all of them.
    y : array_like, shape (N,), or None, default=None
        Class labels (needs an output layer). The prediction is the output unit with the
        largest value, or for a single output unit whether its value is positive
        (unit 1) or not (unit 0), mapped through ``network.classes`` when the network
        has them (scikit-learn classifiers do; otherwise the labels must be the unit
        indices ``0 .. k-1``, ``0`` or ``1`` for a single unit). Labels none of which is
        a class are refused (no prediction could be correct); when only some are not
        classes, a ``UserWarning`` names them and their points count as incorrect.
    fit_data : array_like, shape (N_fit, n), or None, default=None
        The points the data-driven estimates are fitted on (for example the training
        set); then every point of ``X`` is held out. ``None``: half of ``X``, chosen by
        ``seed``, fits and the other half is held out.
    samples : int, default=100000
        MCBE samples on the ball, per layer.
    seed : int or None, default=0
        Seed of every random choice (``None``: fresh entropy, recorded in the report's
        ``parameters``).
    enlarge : {"kde", "blowup"} or None, default="kde"
        How the fitting data are enlarged for the ``"data_enlarged"`` estimate
        (:func:`fastrelu.enlarge_data`); ``None`` skips it.
    enlarge_points : int or None, default=None
        Synthetic points per layer (``None``: 10 times the fitting points).
    bandwidth : "scott", "silverman" or float, default="scott"
        Passed to :func:`fastrelu.enlarge_data`.
    noise : float, default=0.1
        Passed to :func:`fastrelu.enlarge_data`.
    width_draws : int, default=2000
        Gaussian draws for the mean widths.
    power_starts : int, default=32
        Starts of the ReLU power iteration for ``s_1``.
    pbe_dim : int, default=6
        PBE is computed for layers with input dimension up to this.
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The report does not depend on it.
    progress : bool or None, default=None
        Progress bars on stderr: one over the stages of the layers (the stage running
        named beside it) and one per stage's computation. ``True`` always, ``False``
        never, ``None`` only for those that last more than two seconds, on a terminal.

    Returns
    -------
    NetworkReport

    Raises
    ------
    FastReluError
        For a ``network`` that is not a :class:`Network`, data or ``fit_data`` that are
        not finite 2-D arrays with ``n`` columns, labels of the wrong shape, labels
        without an output layer or none of them a class, or invalid counts,
        ``seed``, ``enlarge``, ``bandwidth``, ``noise`` or ``n_jobs``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> rng = np.random.default_rng(0)
    >>> net = fr.Network([fr.ReLULayer(rng.standard_normal((6, 3))),
    ...                   fr.ReLULayer(rng.standard_normal((12, 6)))])
    >>> report = fr.analyze(net, rng.standard_normal((40, 3)), samples=500, width_draws=20,
    ...                     power_starts=2, n_jobs=1)
    >>> [layer.shape for layer in report.layers], report.accuracy
    ([(6, 3), (12, 6)], None)
    >>> sorted(report.layers[0].estimates)
    ['ball', 'data', 'data_enlarged', 'pbe']
    """
    clock = Stopwatch()
    network = _network(network)
    X = as_matrix(X, "X", ncols=network.input_dim)
    N = X.shape[0]
    settings = settings_of(seed, samples, enlarge, enlarge_points, bandwidth, noise, width_draws,
                           power_starts, pbe_dim, n_jobs, progress)
    seed, width_draws = settings.seed, settings.width_draws
    if y is not None:
        y = _labels(y, N)
        if network.output is None:
            raise FastReluError("The 'y' parameter needs a network with an output layer (correctness is the argmax of its output). This network ends with a ReLU layer.")
        _check_classes(y, network)
    heldout, fit_inputs = _split(network, X, fit_data, seed)
    inputs = network.layer_inputs(X)
    outputs = network.hidden_outputs(X)

    layers, per_sample = [], {"heldout": heldout}
    reduced, kept = _reduced_layers(network.hidden)
    all_framed = True  # every layer so far is a frame: the network input can be recovered

    def recover(k, framed, injective):
        nonlocal all_framed
        all_framed = all_framed and framed
        return _recovery(X, reduced[:k + 1], outputs[k][:, kept[k]], framed, all_framed, n_jobs,
                         progress)

    with _Stages(len(network.hidden), progress) as stages:
        stages("input", "width")
        width_in = gaussian_mean_width(Data(inputs[0]), n_draws=width_draws, seed=seed, n_jobs=n_jobs,
                                       progress=progress)
        for k, layer in enumerate(network.hidden):
            report, samples_k, width_in = layer_report(
                k, layer, inputs[k], fit_inputs[k], heldout, kept[k], width_in, settings, stages,
                recover)
            layers.append(report)
            per_sample.update(samples_k)

    accuracy, auc = (None, {}) if y is None else _accuracy(network, X, y, per_sample, len(layers))
    from fastrelu._core.version import __version__

    parameters = {"n_points": N, "n_fit": int(fit_inputs[0].shape[0]), **settings.recorded(),
                  "fit_data": "given" if fit_data is not None else "half of X",
                  "widths": list(network.widths), "version": __version__}
    return NetworkReport(layers=tuple(layers), samples=per_sample, auc=auc, accuracy=accuracy,
                         parameters=parameters, elapsed=clock())


@dataclass(frozen=True)
class _Settings:
    """What every layer's analysis shares: seed, sample counts, enlargement, threads."""

    seed: int
    samples: int
    enlarging: dict
    pbe_dim: int
    width_draws: int
    power_starts: int
    jobs: object
    progress: object

    def recorded(self):
        """The settings as a report's ``parameters`` record them."""
        return {"samples": self.samples, "seed": self.seed, "enlarge": self.enlarging["method"],
                "enlarge_points": self.enlarging["points"], "bandwidth": self.enlarging["bandwidth"],
                "noise": self.enlarging["noise"], "width_draws": self.width_draws,
                "power_starts": self.power_starts, "pbe_dim": self.pbe_dim}


def settings_of(seed, samples, enlarge, enlarge_points, bandwidth, noise, width_draws,
                power_starts, pbe_dim, jobs, progress):
    """The checked settings of :func:`analyze` and :func:`analyze_model`."""
    if enlarge is not None and enlarge not in ENLARGE_METHODS:
        raise FastReluError(f"The 'enlarge' parameter must be one of {list(ENLARGE_METHODS)} or None. Got {enlarge!r} instead.")
    enlarging = {"method": enlarge, "bandwidth": bandwidth_value(bandwidth),
                 "noise": positive_float(noise, "noise", allow_zero=True),
                 "points": None if enlarge_points is None else positive_int(enlarge_points, "enlarge_points")}
    return _Settings(seed_value(seed), positive_int(samples, "samples"), enlarging,
                     positive_int(pbe_dim, "pbe_dim"), positive_int(width_draws, "width_draws"),
                     positive_int(power_starts, "power_starts"), jobs, progress)


def layer_report(k, layer, Xk, fit, heldout, kept, width_in, settings, stages, recover, **extra):
    """One layer's :class:`LayerReport`, its per-point metrics (keyed ``layer<k>.*``) and
    the Gaussian width of its outputs on ``Xk`` (which the next layer of a chain takes
    as its ``width_in``).

    ``recover(k, framed, injective)`` gives ``(stable, cond, reconstructed, error)`` per
    point (``injective``: the layer's pointwise injectivity at ``Xk``): the
    recovery of whatever input the report is about (the network's through every layer
    so far for :func:`analyze`, the layer's own for :func:`analyze_model`). ``extra``
    fills the report's optional fields (``name``, ``kind``, ...).
    """
    clock, times = Stopwatch(), {}
    W, alpha = layer.weight, layer.bias
    m, n = W.shape
    seed, jobs, progress = settings.seed, settings.jobs, settings.progress

    def stage(name):
        stages(k, name)
        times[name] = Stopwatch()

    def done(name):
        times[name] = times[name]()

    stage("estimates")
    estimates, skipped = _layer_estimates(W, kept, fit, settings.enlarging, seed + k,
                                          settings.samples, settings.pbe_dim, jobs, progress)
    done("estimates")
    stage("injectivity")
    summary, heldout_fraction = _layer_injectivity(layer, Xk, heldout, estimates, jobs, progress)
    done("injectivity")
    stage("recovery")
    framed = is_frame(W)
    own_ok, own_cond, recovered, error = recover(k, framed, summary.injective)
    done("recovery")
    stage("local metrics")
    norm = spectral_norm(W)  # for local_metrics' threshold and the report
    local = local_metrics_with_norm(layer, Xk, norm, n_jobs=jobs, progress=progress)
    done("local metrics")
    stage("s_1")
    power = relu_power_iteration(W, bias=alpha, n_starts=settings.power_starts, seed=seed + k,
                                 n_jobs=jobs, per_start=False, progress=progress)
    done("s_1")
    stage("width")
    width_out = gaussian_mean_width(layer, data=Xk, n_draws=settings.width_draws, seed=seed + k + 1,
                                    n_jobs=jobs, progress=progress)
    done("width")
    prefix = f"layer{k}."
    per_sample = {prefix + "injective": summary.injective,
                  prefix + "n_active": local.n_active, prefix + "rank": local.rank,
                  prefix + "sigma_min": local.sigma_min,
                  prefix + "sigma_max": local.sigma_max, prefix + "width": local.width,
                  prefix + "cond": own_cond, prefix + "stable": own_ok,
                  prefix + "reconstructed": recovered,
                  prefix + "reconstruction_error": error}
    ok_errors = error[np.isfinite(error)]
    report = LayerReport(
        index=k, shape=(m, n), redundancy=m / n,
        frame_bounds=frame_bounds(W) if framed else None, bias=np.array(alpha),
        dead=int((~(Xk @ W.T - alpha >= 0).any(axis=0)).sum()), estimates=estimates,
        skipped=skipped,
        fraction_above={name: float(np.mean(alpha > estimate)) for name, estimate in estimates.items()},
        injective_fraction=summary.fraction, stable_fraction=float(np.mean(own_ok)),
        heldout_fraction=heldout_fraction,
        reconstructed_fraction=float(np.mean(recovered)),
        reconstruction_error=float(ok_errors.max()) if ok_errors.size else float("nan"),
        s1=power.s1, spectral_norm=norm,
        width_in=width_in.value, width_out=width_out.value,
        width_stderr=(width_in.stderr, width_out.stderr), elapsed=clock(),
        stage_seconds=times, **extra)
    return report, per_sample, width_out


def _split(network, X, fit_data, seed):
    """``(heldout, fit_inputs)``: which points of ``X`` are held out from fitting (half
    of them, drawn from the seed's split stream, without ``fit_data``; all with it) and
    the fitting points' inputs to every layer."""
    heldout = heldout_points(X.shape[0], fit_data is not None, seed)
    if fit_data is None:
        return heldout, network.layer_inputs(X[~heldout])
    fit = as_matrix(fit_data, "fit_data", ncols=network.input_dim)
    return heldout, network.layer_inputs(fit)


def heldout_points(N, fit_given, seed):
    """Which of ``N`` points are held out from fitting: all when the fitting points are
    given, else half of them, drawn from the seed's split stream."""
    if fit_given:
        return np.ones(N, dtype=bool)
    order = block_generator(seed, 0, SPLIT_STREAM).permutation(N)
    heldout = np.zeros(N, dtype=bool)
    heldout[order[N // 2:]] = True
    return heldout


def relative_errors(x, X):
    """``|x - X| / |X|`` per row (``|x - X|`` where ``X`` is zero)."""
    norms = np.linalg.norm(X, axis=1)
    return np.linalg.norm(x - X, axis=1) / np.where(norms > 0, norms, 1.0)


def predictions(scores):
    """The output unit each score vector predicts: the largest, or for a single unit
    whether its score is positive (unit 1) or not (unit 0)."""
    return (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else np.argmax(scores, axis=1)


class _Stages:
    """The bar over :func:`analyze`'s stages, a context manager: ``stages(layer, name)``
    finishes the stage before and names the one starting; leaving it finishes the last
    one and closes the bar (also when a stage raises)."""

    PER_LAYER = 6  # estimates, injectivity, recovery, local metrics, s_1, width

    def __init__(self, n_layers, progress, total=None):
        total = 1 + self.PER_LAYER * n_layers if total is None else total
        self.bar = progress_bar(total, progress, "analyze", unit="stage")
        self.started = False

    def __call__(self, layer, name):
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_postfix_str(f"layer {layer}: {name}" if isinstance(layer, int) else f"{layer} {name}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.started and exc[0] is None:
            self.bar.update()
        self.bar.close()


def _layer_estimates(W, kept, fit, enlarging, seed, samples, pbe_dim, jobs, progress):
    """``(estimates, skipped)``: the layer's bias estimates by name (``+inf`` on zero
    rows, which nothing constrains) and why the others were not computed."""
    m = W.shape[0]
    enlarged = None
    method = enlarging["method"]
    if method is not None and fit.shape[0]:
        count = 10 * fit.shape[0] if enlarging["points"] is None else enlarging["points"]
        enlarged = enlarge_data(fit, count, method=method, bandwidth=enlarging["bandwidth"],
                                noise=enlarging["noise"], seed=seed)
    found, skipped = _estimates(W[kept], fit, enlarged, seed, samples, pbe_dim, jobs, progress)
    estimates = {}
    for name, value in found.items():  # zero rows are never constrained: +inf
        estimates[name] = np.full(m, np.inf)
        estimates[name][kept] = value
    if kept.size < m:
        skipped["zero rows"] = f"rows {np.setdiff1d(np.arange(m), kept)[:10].tolist()} are zero: never constrained (+inf), left out of the reconstruction"
    if method is None:
        skipped.setdefault("data_enlarged", "enlarge=None")
    elif enlarged is None:
        skipped.setdefault("data_enlarged", "no fitting points")
    return estimates, skipped


def _layer_injectivity(layer, Xk, heldout, estimates, jobs, progress):
    """``(summary, heldout_fraction)``: pointwise injectivity of the layer at its inputs
    ``Xk``, and the injective fraction of the held-out points under the learned bias and
    under each estimate."""
    summary = injectivity_summary(layer, Xk, n_jobs=jobs, progress=progress)
    held_points = Xk[heldout]
    held = held_points.shape[0] > 0
    heldout_fraction = {"learned": float(summary.injective[heldout].mean()) if held else float("nan")}
    for name, estimate in estimates.items():
        heldout_fraction[name] = (injectivity_summary(ReLULayer(layer.weight, estimate), held_points,
                                                      n_jobs=jobs, progress=progress).fraction
                                  if held else float("nan"))
    return summary, heldout_fraction


def _recovery(X, reduced, outputs, framed, all_framed, jobs, progress):
    """``(own_ok, own_cond, recovered, error)`` of the last layer of ``reduced`` (its
    zero rows removed): whether each output of the layer determines its input stably,
    the condition number, and whether the network's input is recovered through all the
    layers so far, with its relative error (NaN where not recovered)."""
    N = X.shape[0]
    options = {"n_jobs": jobs, "progress": progress}
    own = None
    if framed:
        own = reconstruct(reduced[-1], outputs, **options)
        own_ok, own_cond = own.spans, own.cond  # "stable": the active rows span, cond < 1/span_tol
    else:  # nothing to solve: the rows span nowhere
        own_ok, own_cond = np.zeros(N, dtype=bool), np.full(N, np.inf)
    if not all_framed:
        return own_ok, own_cond, np.zeros(N, dtype=bool), np.full(N, np.nan)
    # invert(reduced, outputs, **options), whose first step is the solve just made
    x, recovered, _, _ = invert_layers(reduced, outputs, "dual", INVERT_ZERO_TOL, options, top=own)
    return own_ok, own_cond, recovered, np.where(recovered, relative_errors(x, X), np.nan)


def _accuracy(network, X, y, per_sample, n_layers):
    """``(accuracy, auc)``: the network's accuracy on the labels ``y`` (the predictions
    and their correctness go into ``per_sample``) and, for each layer's per-point metric,
    the area under the ROC curve of separating correct from incorrect predictions."""
    scores = network.forward(X)
    # One output unit: a binary classifier whose positive class is the score > 0
    prediction = predictions(scores)
    classes = getattr(network, "classes", None)
    if classes is not None:
        prediction = np.asarray(classes)[prediction]
    correct = prediction == y
    per_sample["prediction"] = prediction
    per_sample["correct"] = correct
    return float(correct.mean()), metric_auc(per_sample, correct, range(n_layers))


def metric_auc(per_sample, correct, layers):
    """For each per-point metric of ``AUC_METRICS`` of the layers ``layers`` (indices),
    the ROC AUC of separating correct from incorrect predictions (finite ones only)."""
    auc = {}
    for k in layers:
        for metric in AUC_METRICS:
            key = f"layer{k}.{metric}"
            value = _auc(np.asarray(per_sample[key], dtype=np.float64), correct)
            if math.isfinite(value):
                auc[key] = value
    return auc


def save_report(report, out_dir, *, plots=True):
    """Write a network report and its per-point arrays into a directory.

    The files are ``report.json`` (:meth:`NetworkReport.to_dict`), ``samples.npz`` (the
    per-point arrays of :attr:`NetworkReport.samples`) and, with ``plots`` and
    matplotlib installed, the figures of :func:`fastrelu.plot_report`.

    Parameters
    ----------
    report : NetworkReport
        The report, from :func:`fastrelu.analyze`.
    out_dir : str or path-like
        The directory; created if missing.
    plots : bool, default=True
        Also write the figures (skipped, with a note, when matplotlib is missing).

    Returns
    -------
    paths : list of str
        The files written.
    note : str or None
        When figures were asked for but could not be made (matplotlib missing), a note
        saying so; else ``None``.

    Raises
    ------
    FastReluError
        For a ``report`` that is not a :class:`NetworkReport`, or an ``out_dir`` that is
        an existing file or a directory that cannot be created or written to.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> net = fr.Network([fr.ReLULayer(np.random.default_rng(0).standard_normal((6, 3)))])
    >>> report = fr.analyze(net, np.random.default_rng(1).standard_normal((40, 3)),
    ...                     samples=500, width_draws=20, power_starts=2, n_jobs=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths, note = fr.save_report(report, folder, plots=False)
    ...     [os.path.basename(path) for path in paths], note
    (['report.json', 'samples.npz'], None)
    """
    import json
    import os

    from fastrelu._core.io import output_directory
    from fastrelu._networks.plots import check_report, plot_report

    check_report(report, NetworkReport)
    output_directory(out_dir, "out_dir")
    paths = [os.path.join(out_dir, "report.json"), os.path.join(out_dir, "samples.npz")]
    with open(paths[0], "w") as handle:
        json.dump(report.to_dict(), handle, indent=1)
    np.savez_compressed(paths[1], **report.samples)
    note = None
    if plots:
        try:
            paths += plot_report(report, out_dir)
        except FastReluError as exc:
            note = f"figures skipped: {exc}"
    return paths, note
