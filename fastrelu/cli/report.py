"""``fastrelu report``: the layer-by-layer report of a ReLU network on data."""

import json
import sys
import warnings

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.io import check_output_directory, jsonable, load_array, output_directory
from fastrelu.cli.common import _progress, add_progress_arguments


def add_parser(sub):
    """The ``report`` subcommand."""
    report = sub.add_parser("report", help="layer-by-layer injectivity, bias, reconstruction and spectral report of a ReLU network on data")
    report.add_argument("model", help="network file (.npz, .safetensors, .pt/.pth state_dict, .joblib/.pkl), a model (.onnx, or a TorchScript file from torch.jit.save) whose every ReLU layer is analysed, or 'digits' for the built-in digits MLP")
    report.add_argument("--data", help="network inputs to analyse (N x n; for a model, N inputs of its shape)")
    report.add_argument("--data-key", help="array name inside an .npz data file")
    report.add_argument("--labels", help="class labels of the data (N,): measure how metrics separate correct from incorrect predictions")
    report.add_argument("--fit-data", help="points to fit the data-driven estimates on (default: half of --data)")
    report.add_argument("--out", required=True, help="directory for report.json, samples.npz and the figures")
    report.add_argument("--samples", type=int, default=None, help="MCBE samples on the ball per layer (default 100000 for a network, 10000 for a model)")
    report.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    report.add_argument("--enlarge", choices=["kde", "blowup", "none"], default="kde", help="synthetic points near the data for the enlarged-data estimate (default kde)")
    report.add_argument("--no-plots", action="store_true", help="write no figures")
    report.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    report.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    add_progress_arguments(report, "always show the progress bars on stderr (default: for stages over two seconds, when stderr is a terminal)")
    report.set_defaults(run=run)
    return report


def run(args):
    from fastrelu._networks.network import Network
    from fastrelu._networks.report import DEFAULT_SAMPLES, analyze

    check_output_directory(args.out, "--out", "option")  # created once the inputs are read
    if args.model != "digits" and _is_model_file(args.model):
        return _run_model(args)
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
        samples = DEFAULT_SAMPLES if args.samples is None else args.samples
        report = analyze(network, X, y=y, fit_data=fit, samples=samples, seed=args.seed,
                         enlarge=enlarge, n_jobs=args.jobs, progress=_progress(args))
    return _write(report, args)


def _is_model_file(path):
    """An ONNX file or a TorchScript archive: analysed layer by layer as a model."""
    import os

    from fastrelu._networks.onnx_model import is_torchscript

    if path.lower().endswith(".onnx"):
        return True
    return os.path.isfile(path) and is_torchscript(path)


def _run_model(args):
    """``report MODEL`` for an ONNX or TorchScript model: :func:`fastrelu.analyze_model`."""
    from fastrelu._networks.model_report import DEFAULT_MODEL_SAMPLES, analyze_model
    from fastrelu._networks.onnx_model import is_torchscript, load, torchscript_to_onnx

    if args.data is None:
        raise FastReluError("The 'report' command needs --data FILE (the model inputs to analyse, N of them along the first axis).")
    X = load_array(args.data, "data", key=args.data_key, key_option="--data-key")
    if X.ndim < 2 or X.shape[0] == 0:
        raise FastReluError(f"The 'data' file must hold at least one model input along its first axis. Got an array of shape {X.shape}.")
    y = None if args.labels is None else load_array(args.labels, "--labels", key_option=None, numeric=False)
    if y is not None:
        y = _label_vector(y, X.shape[0])
    fit = None if args.fit_data is None else load_array(args.fit_data, "fit-data", key_option=None)
    model = torchscript_to_onnx(args.model, X[:1]) if is_torchscript(args.model) else load(args.model)
    enlarge = None if args.enlarge == "none" else args.enlarge
    samples = DEFAULT_MODEL_SAMPLES if args.samples is None else args.samples
    try:
        report = analyze_model(model, X, labels=y, fit_data=fit, samples=samples, seed=args.seed,
                               enlarge=enlarge, n_jobs=args.jobs, progress=_progress(args))
    except FastReluError as exc:  # name the options, not analyze_model's parameters
        raise FastReluError(_as_options(str(exc))) from None
    return _write(report, args, model=True)


#: analyze_model's parameters as the command line's options name them.
_OPTIONS = {"The 'data' parameter": "The '--data' file", "The 'fit_data' parameter": "The '--fit-data' file",
            "The 'labels' parameter": "The '--labels' file"}


def _as_options(message):
    for parameter, option in _OPTIONS.items():
        message = message.replace(parameter, option)
    return message


def _write(report, args, model=False):
    """Save the report into ``--out`` and print its summary (``--json``: as JSON; the
    per-neuron and per-point arrays stay in the files). A model's report also names the
    layers not analysed and the ReLUs that are not layers."""
    from fastrelu._networks.report import save_report

    output_directory(args.out, "--out", "option")
    paths, note = save_report(report, args.out, plots=not args.no_plots)
    if note:
        print(f"fastrelu: warning: {note}", file=sys.stderr)
    extra = {key: report.parameters[key] for key in ("not_analysed", "other_relus")} if model else {}
    if args.json:
        layers = [{k: v for k, v in layer.to_dict().items()
                   if k not in ("bias", "estimates", "channel_estimates")} for layer in report.layers]
        json.dump(jsonable({"layers": layers, "auc": report.auc, "accuracy": report.accuracy, **extra,
                            "files": paths, "elapsed": report.elapsed}), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(report.summary())
        for where, reason in extra.get("other_relus", []):
            print(f"not a layer: {where}: {reason}")
        for name, reason in extra.get("not_analysed", {}).items():
            print(f"not analysed: {name}: {reason}")
        print(f"written: {', '.join(paths)} ({report.elapsed:.1f} s)")
    return 0



def _label_vector(y, n_points):
    """The ``--labels`` array as a vector of ``n_points`` labels (``None``: any number),
    from a 1-D array or one column or row (a text file of a vector loads as one column);
    integer labels that a text file loaded as floats become integers."""
    if np.ndim(y) == 2 and 1 in np.shape(y):
        y = y.ravel()
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if np.ndim(y) != 1 or (n_points is not None and y.shape[0] != n_points):
        expected = "one label per point of --data" + ("" if n_points is None else f" ({n_points})")
        raise FastReluError(f"The '--labels' file must hold {expected}: a 1-D array, one column or one row. Got an array of shape {np.shape(y)}.")
    return y


def _labels_for(y, network, X):
    """The ``--labels`` array as :func:`fastrelu.analyze` takes it, checked here so that
    the errors and the warning name ``--labels``: one label per point of ``--data``, in a
    1-D array or in one column or row (a text file of a vector loads as one column),
    and labels among the network's classes (a warning when only some are)."""
    from fastrelu._networks.report import listed

    y = _label_vector(y, np.shape(X)[0] if np.ndim(X) == 2 else None)  # else analyze refuses --data
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
