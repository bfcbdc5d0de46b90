"""Reading arrays from files for the command line, and plain values for JSON output."""

import math
import os
import tempfile
import warnings

import numpy as np

from fastrelu._core.errors import FastReluError


def load_array(path, name, *, key=None, key_option="--key", numeric=True):
    """Load an array from ``.npy``, ``.npz`` (``key`` selects the array when there are
    several; ``key_option`` is the option that sets it, named in the error, or ``None``),
    ``.csv`` (comma-separated) or ``.txt`` (whitespace-separated). With ``numeric`` (the
    default) it must hold real numbers: a complex array is refused, not cut to its real
    part."""
    if not os.path.isfile(path):
        raise FastReluError(f"The '{name}' file must exist and be readable. Got {path!r}, which is not a file.")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".npz", ".csv", ".txt"):
        raise FastReluError(f"The '{name}' file must end in .npy, .npz, .csv or .txt. Got {path!r}.")
    try:
        with warnings.catch_warnings():
            # NumPy warns (an empty text file) where it should fail: one error, no noise
            warnings.simplefilter("error")
            array = _read(path, name, ext, key, key_option)
    except FastReluError:
        raise
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise FastReluError(f"The '{name}' file {path!r} could not be read as a {ext} array: {exc}") from None
        # a real .npy (or an .npz member) of dtype object: loading it would run pickled code
        raise FastReluError(f"The '{name}' file {path!r} must hold an array of numbers. Got an array of Python objects (dtype object), which is not loaded because that would unpickle it; save it with a numeric dtype (np.asarray(a, dtype=float)).") from None
    except Exception as exc:  # numpy raises many types for malformed files
        raise FastReluError(f"The '{name}' file {path!r} could not be read as a {ext} array: {exc}") from None
    real = np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    if numeric and (not real or np.iscomplexobj(array)):
        raise FastReluError(f"The '{name}' file {path!r} must hold real numbers. Got an array of dtype {array.dtype}.")
    return array


#: The first bytes of a file written by numpy.save (.npy) and numpy.savez (a zip archive).
_SIGNATURES = {".npy": (b"\x93NUMPY", "numpy.save"), ".npz": (b"PK", "numpy.savez")}


def _check_signature(path, name, ext):
    """A file that is not what its extension says is named as such: np.load would take
    it for a pickle and report pickled data."""
    signature, writer = _SIGNATURES[ext]
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head.startswith(signature):
        got = "an empty file" if not head else f"a file that starts with {head!r}"
        raise FastReluError(f"The '{name}' file {path!r} must be a NumPy {ext} file (as written by {writer}, starting with {signature!r}). Got {got}.")


def _read(path, name, ext, key, key_option):
    if ext in _SIGNATURES:
        _check_signature(path, name, ext)
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) != 1:
                    how = f"choose one with {key_option}" if key_option else "it must hold exactly one"
                    raise FastReluError(f"The '{name}' file {path!r} holds arrays {names}: {how}.")
                key = names[0]
            if key not in names:
                raise FastReluError(f"The '{name}' file {path!r} has no array {key!r}. It holds {names}.")
            return archive[key]
    return np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=2)


def output_file(path, name, suffix):
    """The file a result will be written to (NumPy adds ``suffix`` when it is missing),
    checked before any work is done: a long run must not end in a write that fails.

    The file is created and removed again when it does not exist yet, so the check is the
    file system's own; an existing file is opened for writing without being truncated.
    """
    final = os.fspath(path)
    if not os.path.isdir(final) and not final.endswith(suffix):
        final += suffix
    if os.path.isdir(final):
        raise FastReluError(f"The '{name}' file must be a file to write. Got {final!r}, which is a directory.")
    parent = os.path.dirname(os.path.abspath(final))
    if not os.path.isdir(parent):
        raise FastReluError(f"The '{name}' file must be in an existing directory. Got {final!r}, whose directory {parent!r} does not exist.")
    try:
        if os.path.exists(final):
            open(final, "r+b").close()
        else:
            open(final, "xb").close()
            os.remove(final)
    except OSError as exc:
        raise FastReluError(f"The '{name}' file must be writable. Got {final!r} ({exc.strerror or exc}).") from None
    return final


def output_directory(path, name, what="parameter"):
    """Create the directory results will be written to, before any work is done, and
    check that files can be made in it (``what``: the kind of ``name`` in the error,
    "parameter" or "option")."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FastReluError(f"The '{name}' {what} must be a directory (it is created if missing). Got {path!r}, an existing file.")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise FastReluError(f"The '{name}' {what} must be a directory that can be created and written to. Got {path!r} ({exc.strerror or exc}).") from None
    return path


def check_output_directory(path, name, what="parameter"):
    """Check, without creating anything, that :func:`output_directory` will be able to
    make ``path``: an existing directory that is writable, or a path whose nearest
    existing ancestor is a writable directory. Bad input found later (by the run's own
    checks) then leaves no empty directory behind."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FastReluError(f"The '{name}' {what} must be a directory (it is created if missing). Got {path!r}, an existing file.")
    ancestor = os.path.abspath(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor) or not os.access(ancestor, os.W_OK | os.X_OK):
        kind = "a file" if not os.path.isdir(ancestor) else "a directory that cannot be written to"
        raise FastReluError(f"The '{name}' {what} must be a directory that can be created and written to. Got {path!r}, under {ancestor!r}, {kind}.")
    return path


def write_output(path, name, write):
    """``write(path)``, with a failure (a full disk) reported as the file's error."""
    try:
        write(path)
    except OSError as exc:
        raise FastReluError(f"The '{name}' file {path!r} could not be written ({exc.strerror or exc}).") from None


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
