"""Which options apply in which modes of their command.

Some options apply only in some modes of their command. One given where it does not
apply is refused, naming the option and the choice that excludes it, rather than
silently ignored. "Given" means written on the command line: build_parser sets every
option's default to None and main fills the defaults in after this check, so that an
option given its default value is seen too.
"""

import argparse
from collections.abc import Callable
from typing import NamedTuple


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
