"""Checkpoint files of block-decomposed runs (see ``_blocks``).

A checkpoint is one ``.npz`` archive, read and written without pickle:

- ``header``: JSON text with the file format, the kernel, the fingerprint of the run's
  parameters (hashes of the input arrays, sample counts, seed, tolerances, the block
  definition), the number of blocks done and the machine that wrote it (CPU type, BLAS,
  versions: a resume elsewhere is allowed, with a warning, because the last bits may
  differ);
- ``done``: the map of finished blocks, as sorted disjoint ranges ``[first, stop)`` (an
  int64 array of shape ``(k, 2)``; format 1 stored one bit per block);
- ``state.<name>``: the merged partial state (running minima, counts, ...).

It is written to a temporary file in the same directory and moved over the old one with
``os.replace``, so a reader (or a run killed mid-write) only ever sees a whole file.
"""

import hashlib
import json
import os
import time
import warnings

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.validation import seed_value
from fastrelu._runtime.blockmap import BLOCK_FORMAT, BlockMap, json_normal

FORMAT = 2


def _path_value(path):
    try:
        text = os.fspath(path)
    except TypeError:
        raise FastReluError(f"The 'checkpoint' parameter must be a file path (str or os.PathLike). Got {type(path).__name__} instead.") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    folder = os.path.dirname(os.path.abspath(text))
    if not text or os.path.isdir(text) or not os.path.isdir(folder):
        raise FastReluError(f"The 'checkpoint' parameter must be a file path in an existing directory. Got {text!r} instead.")
    return text


def _unreadable(path, reason):
    return FastReluError(f"The 'checkpoint' file {path!r} cannot be read as a fastrelu checkpoint ({reason}). Delete it to start afresh or give another path.")


def _read(path):
    """``(header, arrays)`` of a checkpoint file; raises FastReluError if it is not one."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    if magic != b"PK\x03\x04":
        raise _unreadable(path, "not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:  # zip, npy and OS errors come in many types
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    try:
        header = json.loads(str(arrays.pop("header")))
        version = header.get("format") if isinstance(header, dict) else None
        if isinstance(version, int) and 0 < version < FORMAT:
            raise _Older(version)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format') if isinstance(header, dict) else header!r}, expected {FORMAT}")
        if not isinstance(header.get("fingerprint"), dict):
            raise ValueError("no fingerprint")
    except _Older as old:
        raise _unreadable(path, f"format {old.args[0]}, written by an earlier version of fastrelu; this one reads format {FORMAT}: finish the run with the version that wrote it") from None
    except Exception as exc:
        raise _unreadable(path, f"bad header: {exc}") from None
    return header, arrays


class _Older(Exception):
    """A checkpoint of an earlier format."""


def machine():
    """What decides the last bits of a kernel's arithmetic besides its inputs: the CPU
    type and features (Numba compiles for them), the BLAS libraries and their kernels,
    and the versions of the compiled packages."""
    import llvmlite.binding as llvm
    import numba
    from threadpoolctl import threadpool_info

    from fastrelu._core.version import __version__

    features = llvm.get_host_cpu_features().flatten()
    libraries = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    # NumPy's and SciPy's own copies when they ship them (wheels): a BLAS that another
    # package loaded into the process must not make the same machine look different
    own = [lib for lib in libraries
           if any(part in os.path.basename(os.path.dirname(lib.get("filepath", "")))
                  for part in ("numpy", "scipy"))]
    blas = sorted(f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
                  for lib in own or libraries)
    return {"cpu": llvm.get_host_cpu_name(),
            "cpu_features": hashlib.sha256(features.encode()).hexdigest()[:16],
            "blas": blas, "numpy": np.__version__, "numba": numba.__version__,
            "fastrelu": __version__}


def _short(value):
    """A fingerprint entry for a message: hashes abbreviated, the rest as JSON."""
    if isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef"):
        return f"sha256:{value[:12]}..."
    return json.dumps(value)


def seed_for(seed, checkpoint, kernel):
    """The seed of a run: ``seed`` itself when given; otherwise the seed recorded in an
    existing checkpoint of the same kernel (a run started without a seed draws a fresh
    one and records it, so that rerunning the same call resumes it), else fresh
    entropy."""
    if seed is not None or checkpoint is None:
        return seed_value(seed)
    path = _path_value(checkpoint)
    if os.path.exists(path):
        header, _ = _read(path)
        recorded = header["fingerprint"].get("seed")
        if header["fingerprint"].get("kernel") == kernel and isinstance(recorded, int) and recorded >= 0:
            return recorded
    return seed_value(None)


class Saver:
    """Loads and saves the checkpoint of one plan."""

    def __init__(self, path, plan, interval):
        self.path = _path_value(path)
        self.plan = plan
        self._map = BlockMap
        self.interval = interval
        self.fingerprint = json_normal({"kernel": plan.kernel, "block_format": BLOCK_FORMAT,
                                        "n_blocks": plan.n_blocks, **plan.fingerprint()})
        self.last = time.monotonic()
        self.machine = machine()

    def exists(self):
        return os.path.exists(self.path)

    def load(self):
        """``(state, done)`` (a ``BlockMap``) from the file, or None when there is no
        file yet."""
        if not self.exists():
            return None
        header, arrays = _read(self.path)
        theirs, ours = header["fingerprint"], self.fingerprint
        keys = [key for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
        for key in list(keys):  # the machine's own choices: the run goes on as it began
            if key in theirs and key in ours and self.plan.adopt(key, theirs[key]):
                ours[key] = theirs[key]
                keys.remove(key)
        if len(keys) > 1 and "n_blocks" in keys:
            keys.remove("n_blocks")  # follows from the sample count, which is named
        differ = [f"{key} is {_short(theirs.get(key))} there and {_short(ours.get(key))} here"
                  for key in keys]
        if differ:
            raise FastReluError(f"The 'checkpoint' file {self.path!r} was written for other parameters: {'; '.join(differ)}. Give the same parameters to resume it, or another path to start afresh.")
        written_on, here = header.get("machine"), self.machine
        if isinstance(written_on, dict) and written_on != here:
            changed = ", ".join(f"{key} {json.dumps(written_on.get(key))} there, {json.dumps(here.get(key))} here"
                                for key in sorted(set(written_on) | set(here)) if written_on.get(key) != here.get(key))
            warnings.warn(f"The checkpoint {self.path!r} was written on another kind of machine ({changed}). The resumed result is as valid, but its last bits may differ from those of an uninterrupted run on either machine.", RuntimeWarning, stacklevel=4)
        try:
            done = self._map.from_array(arrays["done"], self.plan.n_blocks)
            state = self.plan.empty()
            for name, empty in state.items():
                stored = arrays[f"state.{name}"]
                shape = stored.shape[1:] if name in self.plan.variable else stored.shape
                expected = empty.shape[1:] if name in self.plan.variable else empty.shape
                if shape != expected or stored.dtype != empty.dtype:
                    raise ValueError(f"state '{name}' of shape {stored.shape} and type {stored.dtype}, expected {empty.shape} and {empty.dtype}")
                state[name] = np.array(stored)
        except KeyError as exc:
            raise _unreadable(self.path, f"missing array {exc}") from None
        except ValueError as exc:
            raise _unreadable(self.path, str(exc)) from None
        return state, done

    def maybe_save(self, state, done):
        """Save if ``interval`` seconds have passed since the last write."""
        if time.monotonic() - self.last >= self.interval:
            self.save(state, done)

    def save(self, state, done):
        """Write the file atomically (a temporary file in the same directory, then
        ``os.replace``)."""
        header = {"format": FORMAT, "fingerprint": self.fingerprint,
                  "blocks_done": done.n_done, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": self.machine}
        arrays = {"header": np.array(json.dumps(header)), "done": done.to_array()}
        arrays.update({f"state.{name}": np.asarray(value) for name, value in state.items()})
        folder, name = os.path.split(os.path.abspath(self.path))
        temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:  # a full disk, a lost mount, ...: not the cluster's fault
            raise FastReluError(f"The 'checkpoint' file {self.path!r} must be writable. Got {type(exc).__name__}: {exc} while saving {done.n_done} of {done.n_blocks} finished blocks; the file keeps the state it last saved.") from None
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        self.last = time.monotonic()
