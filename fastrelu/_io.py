"""Reading arrays from files for the command line, and plain values for JSON output."""

import math
import os

import numpy as np

from ._errors import FastReluError


def load_array(path, name, *, key=None):
    """Load a numeric array from ``.npy``, ``.npz`` (``key`` selects the array when there
    are several), ``.csv`` (comma-separated) or ``.txt`` (whitespace-separated)."""
    if not os.path.isfile(path):
        raise FastReluError(f"The '{name}' file must exist and be readable. Got {path!r}, which is not a file.")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None:
                    if len(names) != 1:
                        raise FastReluError(f"The '{name}' file {path!r} holds arrays {names}: choose one with --key.")
                    key = names[0]
                if key not in names:
                    raise FastReluError(f"The '{name}' file {path!r} has no array {key!r}. It holds {names}.")
                return archive[key]
        if ext in (".csv", ".txt"):
            return np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=2)
    except FastReluError:
        raise
    except Exception as exc:  # numpy raises many types for malformed files
        raise FastReluError(f"The '{name}' file {path!r} could not be read as a {ext} array: {exc}") from None
    raise FastReluError(f"The '{name}' file must end in .npy, .npz, .csv or .txt. Got {path!r}.")


def jsonable(value):
    """``value`` with NumPy types turned into Python ones (arrays into lists) and
    non-finite floats into ``None``: strict JSON has no inf or NaN."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
