"""The ``training`` experiment: injectivity while networks learn the digits, with and
without enforcement (THEORY §11; docs/experiments.md).

Two families are trained on scikit-learn's bundled digits (one stratified split for
all runs): MLPs ``64 -> h -> h -> 10`` at each width ``h`` of ``widths`` and the CNN of
:func:`fastrelu.digits_cnn`. Each model is trained twice from the same initialisation
and the same batches, with an :class:`fastrelu.torch.InjectivityMonitor` attached:
once watching only, once with ``enforce=True``. After every epoch (and before the first)
the record gets the test accuracy and, for each ReLU layer on held-out points, the
fraction at which the layer is injective with its learned bias and how well its input
is recovered from its output with :func:`fastrelu.reconstruct`.

torch runs with one thread inside the experiment (restored afterwards), so a seed gives
the same numbers whatever the machine's thread count; ``n_jobs`` sets fastrelu's own
threads, on which nothing depends either.
"""

import sys
import time

import numpy as np
from tqdm.auto import tqdm

from fastrelu._core.errors import FastReluError, MissingDependencyError
from fastrelu._core.validation import positive_float, positive_int
from fastrelu._injectivity.pointwise import pointwise_injectivity
from fastrelu._reconstruct.driver import reconstruct

#: First spawn-key entry of this experiment's random streams.
TAG = 4
#: A reconstruction counts as recovered at this relative error or below.
RECOVERED = 1e-6
#: Pixels of a digit image: the input width of the first layer of every model.
INPUTS = 64

DEFAULTS = {
    "models": ["mlp", "cnn"],
    "widths": [64, 128, 256],
    "mlp_epochs": 15,
    "mlp_lr": 1e-3,
    "cnn_channels": [8, 16],
    "cnn_epochs": 12,
    "cnn_lr": 0.01,
    "batch_size": 64,
    "test_fraction": 0.3,
    "train_points": None,
    "eval_points": 300,
    "reconstruct_points": 50,
    "monitor_window": 1,
    "monitor_points": None,
}

QUICK = dict(DEFAULTS, widths=[32], mlp_epochs=2, cnn_channels=[2, 4], cnn_epochs=1,
             train_points=192, eval_points=48, reconstruct_points=16, monitor_points=16)


# --------------------------------------------------------------------------- validation


def _models(value, name):
    allowed = ["mlp", "cnn"]
    message = f"The '{name}' parameter must be a non-empty list of distinct names among {allowed}. Got {value!r} instead."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise FastReluError(message)
    items = list(value)
    if not items or any(item not in allowed for item in items) or len(set(items)) != len(items):
        raise FastReluError(message)
    return [item for item in allowed if item in items]


def _widths(value, name):
    message = f"The '{name}' parameter must be a non-empty, strictly increasing list of integers >= 1. Got {value!r} instead."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise FastReluError(message)
    items = [positive_int(v, name) for v in value]
    if not items or any(b <= a for a, b in zip(items, items[1:])):
        raise FastReluError(message)
    return items


def _channels(value, name):
    message = f"The '{name}' parameter must be two integers >= 1 (the output channels of the two convolutions). Got {value!r} instead."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise FastReluError(message)
    return [positive_int(v, name) for v in value]


def _fraction(value, name):
    fraction = positive_float(value, name)
    if not fraction < 1.0:
        raise FastReluError(f"The '{name}' parameter must be a real number in (0, 1). Got {value!r} instead.")
    return fraction


def _optional_count(value, name):
    return None if value is None else positive_int(value, name)


def _count(value, name):
    return positive_int(value, name)


def _epochs(value, name):
    return positive_int(value, name, minimum=0)


CHECKS = {
    "models": _models, "widths": _widths, "mlp_epochs": _epochs, "mlp_lr": positive_float,
    "cnn_channels": _channels, "cnn_epochs": _epochs, "cnn_lr": positive_float,
    "batch_size": _count, "test_fraction": _fraction, "train_points": _optional_count,
    "eval_points": _count, "reconstruct_points": _count, "monitor_window": _count,
    "monitor_points": _optional_count,
}


# --------------------------------------------------------------------------- the run


def _import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError('The training experiment needs torch: install it with pip install "fastrelu[torch]".', name="torch") from None
    return torch


def _stream(seed, *key):
    return np.random.SeedSequence(seed, spawn_key=(TAG, *key))


def _data(p, seed):
    """The split (one for every run), subsets of it as the parameters ask."""
    from fastrelu._networks.digits import digits_split

    split_seed = int(_stream(seed, 0).generate_state(1, np.uint32)[0])
    X_train, X_test, y_train, y_test = digits_split(seed=split_seed, test_fraction=p["test_fraction"], images=True)
    for key, available in (("train_points", len(X_train)), ("eval_points", len(X_test))):
        if p[key] is not None and p[key] > available:
            raise FastReluError(f"The '{key}' parameter must be at most {available} (the split's {key.split('_')[0]} images at test_fraction={p['test_fraction']}). Got {p[key]} instead.")
    if p["reconstruct_points"] > p["eval_points"]:
        raise FastReluError(f"The 'reconstruct_points' parameter must be at most eval_points={p['eval_points']}. Got {p['reconstruct_points']} instead.")
    rng = np.random.default_rng(_stream(seed, 1))
    if p["train_points"] is not None:
        keep = np.sort(rng.choice(len(X_train), size=p["train_points"], replace=False))
        X_train, y_train = X_train[keep], y_train[keep]
    evaluate = np.sort(rng.choice(len(X_test), size=p["eval_points"], replace=False))
    return {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
            "X_eval": X_test[evaluate], "split_seed": split_seed,
            "eval_index": evaluate}


def _mlp(width, torch):
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(INPUTS, width), nn.ReLU(), nn.Linear(width, width),
                         nn.ReLU(), nn.Linear(width, 10))


def _relative_errors(recovered, X):
    """``|x_hat - x| / |x|`` per point (``|x_hat|`` where ``x = 0``)."""
    error = np.linalg.norm(recovered - X, axis=1)
    norm = np.linalg.norm(X, axis=1)
    return np.where(norm > 0, error / np.where(norm > 0, norm, 1.0), error)


def _evaluate(model, data, n_reconstruct, n_jobs, torch):
    """Test accuracy and, per ReLU layer, held-out injectivity and reconstruction."""
    from fastrelu._networks.torch_model import capture, relu_layers

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data["X_test"]))
    accuracy = float((logits.argmax(1).numpy() == data["y_test"]).mean())
    found = relu_layers(model, torch.from_numpy(data["X_eval"][:1]))
    inputs = capture(model, torch.from_numpy(data["X_eval"]), found)
    layers = {}
    for layer in found:
        X = inputs[layer.name]
        injective = pointwise_injectivity(layer.layer, X, n_jobs=n_jobs, progress=False)
        part = X[:n_reconstruct]
        entry = {"injective_fraction": float(injective.mean()), "n": int(X.shape[1]),
                 "m": int(layer.layer.weight.shape[0])}
        try:
            rec = reconstruct(layer.layer, layer.layer(part), "dual", n_jobs=n_jobs, progress=False)
        except FastReluError:  # the weights are not a frame: no input is determined
            entry.update(injective_fraction_reconstructed=float(injective[:n_reconstruct].mean()),
                         median_relative_error=None, recovered_fraction=0.0, ok_fraction=0.0,
                         recovered_at_injective=None)
        else:
            errors = _relative_errors(rec.x, part)
            good = errors <= RECOVERED
            inj = injective[:n_reconstruct]
            entry.update(injective_fraction_reconstructed=float(inj.mean()),
                         median_relative_error=float(np.median(errors)),
                         recovered_fraction=float(good.mean()), ok_fraction=float(rec.ok.mean()),
                         recovered_at_injective=float(good[inj].mean()) if inj.any() else None)
        layers[layer.name] = entry
    return accuracy, layers


def _train(kind, width, enforce, p, seed, data, n_jobs, torch):
    """One run: the model's history per epoch and the monitor's summary."""
    from fastrelu._networks.digits import digits_batches, digits_cnn_module
    from fastrelu._networks.monitor import InjectivityMonitor

    key = (2, width) if kind == "mlp" else (3,)
    init_seed = int(_stream(seed, *key, 0).generate_state(1, np.uint64)[0])
    monitor_seed = int(_stream(seed, *key, 2).generate_state(1, np.uint32)[0])
    epochs = p["mlp_epochs"] if kind == "mlp" else p["cnn_epochs"]
    lr = p["mlp_lr"] if kind == "mlp" else p["cnn_lr"]
    clock = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the caller's global random state is left as it was
        torch.manual_seed(init_seed)
        model = _mlp(width, torch) if kind == "mlp" else digits_cnn_module(tuple(p["cnn_channels"]))
    order = np.random.default_rng(_stream(seed, *key, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, targets = torch.from_numpy(data["X_train"]), torch.from_numpy(data["y_train"])
    monitor = InjectivityMonitor(model, window=p["monitor_window"], points=p["monitor_points"],
                                 enforce=enforce, seed=monitor_seed, n_jobs=n_jobs,
                                 example=inputs[:1])
    names = monitor.layers.names()
    history = {"test_accuracy": [], "train_loss": [None], "layers": {name: {} for name in names},
               "monitor": {name: {"steps": [0], "projected": [0], "steps_projecting": [0],
                                  "batch_injective_mean": [None], "fraction_above_mean": [None]}
                           for name in names}}
    monitor_seconds = 0.0

    def record_epoch():
        accuracy, layers = _evaluate(model, data, p["reconstruct_points"], n_jobs, torch)
        history["test_accuracy"].append(accuracy)
        for name, entry in layers.items():
            for field, value in entry.items():
                history["layers"][name].setdefault(field, []).append(value)

    try:
        record_epoch()
        for _ in range(epochs):
            model.train()
            losses, start = [], len(monitor.history)
            for batch in digits_batches(order, len(inputs), p["batch_size"]):
                index = torch.from_numpy(batch)
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(inputs[index]), targets[index])
                loss.backward()
                optimiser.step()
                tick = time.perf_counter()
                monitor.step()
                monitor_seconds += time.perf_counter() - tick
                losses.append(float(loss.detach()))
            history["train_loss"].append(float(np.mean(losses)))
            epoch_records = monitor.history[start:]
            for name in names:
                mine = [r for r in epoch_records if r.layer == name]
                summary = history["monitor"][name]
                summary["steps"].append(len(mine))
                summary["projected"].append(int(sum(r.projected for r in mine)))
                summary["steps_projecting"].append(int(sum(r.projected > 0 for r in mine)))
                summary["batch_injective_mean"].append(float(np.mean([r.injective_fraction for r in mine])))
                summary["fraction_above_mean"].append(float(np.mean([r.fraction_above for r in mine])))
            record_epoch()
    finally:
        monitor.close()
    shapes = [(history["layers"][name]["n"][0], history["layers"][name]["m"][0]) for name in names]
    for name in names:
        del history["layers"][name]["n"], history["layers"][name]["m"]
    return {
        "model": kind, "width": width if kind == "mlp" else None,
        "channels": None if kind == "mlp" else p["cnn_channels"], "enforce": enforce,
        "epochs": epochs, "learning_rate": lr, "init_seed": init_seed, "monitor_seed": monitor_seed,
        "layer_names": names,
        "layer_shapes": [{"name": name, "n": n, "m": m, "redundancy": m / n}
                         for name, (n, m) in zip(names, shapes)],
        "test_accuracy": history["test_accuracy"], "train_loss": history["train_loss"],
        "layers": history["layers"], "monitor": history["monitor"],
        "monitor_steps": len(monitor.history) // max(1, len(names)),
        "monitor_seconds": monitor_seconds, "seconds": time.perf_counter() - clock,
    }


def run_training(p, seed, n_jobs, progress):
    """Every model of ``models`` (each MLP width, the CNN), without and with enforcement."""
    torch = _import_torch()
    data = _data(p, seed)
    plan = [("mlp", h) for h in p["widths"] if "mlp" in p["models"]]
    plan += [("cnn", None)] if "cnn" in p["models"] else []
    threads = torch.get_num_threads()
    runs = []
    if progress is None:
        bar = tqdm(total=2 * len(plan), desc="training", delay=2.0, file=sys.stderr,
                   disable=not sys.stderr.isatty(), leave=False)
    else:
        bar = tqdm(total=2 * len(plan), desc="training", file=sys.stderr, disable=not progress, leave=False)
    try:
        torch.set_num_threads(1)  # float reductions then do not depend on the machine
        for kind, width in plan:
            for enforce in (False, True):
                runs.append(_train(kind, width, enforce, p, seed, data, n_jobs, torch))
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    return {
        "torch_version": torch.__version__, "torch_threads": 1,
        "split": {"seed": data["split_seed"], "train_images": int(len(data["X_train"])),
                  "test_images": int(len(data["X_test"])), "eval_images": int(len(data["X_eval"])),
                  "reconstruct_images": p["reconstruct_points"]},
        "recovered_threshold": RECOVERED,
        "runs": runs,
    }


# --------------------------------------------------------------------------- report


def run_label(run):
    return f"MLP h = {run['width']}" if run["model"] == "mlp" else f"CNN channels {tuple(run['channels'])}"


def _pairs(results):
    """``(label, plain run, enforced run)`` per model, in run order."""
    runs = results["runs"]
    return [(run_label(runs[k]), runs[k], runs[k + 1]) for k in range(0, len(runs), 2)]


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}g}"


def describe_training(results):
    lines = ["final epoch, without -> with enforcement: test accuracy; per layer held-out injective fraction, "
             f"fraction recovered to {RECOVERED:g} relative"]
    for label, plain, forced in _pairs(results):
        lines.append(f"  {label}: accuracy {plain['test_accuracy'][-1]:.3f} -> {forced['test_accuracy'][-1]:.3f}")
        for name in plain["layer_names"]:
            a, b = plain["layers"][name], forced["layers"][name]
            lines.append(f"    layer {name}: injective {_fmt(a['injective_fraction'][-1])} -> "
                         f"{_fmt(b['injective_fraction'][-1])}, recovered {_fmt(a['recovered_fraction'][-1])} -> "
                         f"{_fmt(b['recovered_fraction'][-1])}, projected neurons {sum(forced['monitor'][name]['projected'])}")
    return lines


_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def plot_training(results, plt_figure, path):
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    pairs = _pairs(results)
    fig = plt_figure(figsize=(15.0, 3.3 * len(pairs) + 1.0))
    axes = fig.subplots(len(pairs), 3, squeeze=False)
    styles = {False: {"linestyle": "--", "linewidth": 1.3, "zorder": 3},
              True: {"linestyle": "-", "linewidth": 2.4, "alpha": 0.75, "zorder": 2}}
    for row, (label, plain, forced) in enumerate(pairs):
        epochs = np.arange(len(plain["test_accuracy"]))
        ax = axes[row, 0]
        ax.plot(epochs, forced["test_accuracy"], color="tab:purple", marker=".", label="with enforcement", **styles[True])
        ax.plot(epochs, plain["test_accuracy"], color="0.2", marker=".", label="without enforcement", **styles[False])
        ax.set_ylabel(f"{label}\ntest accuracy")
        ax.set_ylim(0.0, 1.02)
        ax.legend(fontsize=8, loc="lower right")
        for col, field, title in ((1, "injective_fraction", "held-out points where the layer is injective"),
                                  (2, "recovered_fraction", f"held-out inputs recovered to {RECOVERED:g} relative error")):
            ax = axes[row, col]
            handles = []
            for k, shape in enumerate(plain["layer_shapes"]):
                name, colour = shape["name"], _COLOURS[k % len(_COLOURS)]
                for run in (forced, plain):
                    ax.plot(epochs, run["layers"][name][field], color=colour, marker=".", **styles[run["enforce"]])
                handles.append(Line2D([], [], color=colour, linewidth=2.4,
                                      label=f"layer '{name}', m x n = {shape['m']} x {shape['n']}"))
            handles += [Line2D([], [], color="0.3", **styles[True], label="with enforcement"),
                        Line2D([], [], color="0.3", **styles[False], label="without enforcement")]
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("injective fraction" if col == 1 else "recovered fraction")
            ax.legend(handles=handles, fontsize=7, loc="center right")
            if row == 0:
                ax.set_title(f"fraction of {title}", fontsize=10)
        if row == 0:
            axes[row, 0].set_title("test accuracy (all test images)", fontsize=10)
    for ax in axes.flat:
        ax.grid(True, linestyle="--", alpha=0.4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("epoch (0: at initialisation)")
    fig.suptitle("Digits: training with (solid) and without (dashed) the InjectivityMonitor's bias projection; "
                 f"held-out: {results['split']['eval_images']} test images "
                 f"({results['split']['reconstruct_images']} for reconstruction)", y=0.995)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    return [path]
