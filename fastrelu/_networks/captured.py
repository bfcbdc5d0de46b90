"""Captured layer inputs streamed to disk (``out_dir`` of :func:`fastrelu.capture`, for
PyTorch and ONNX models): raw float64 blocks appended batch by batch, then given an
``.npy`` header and returned as memory maps."""

import contextlib
import os
import re

import numpy as np

from fastrelu._core.errors import FastReluError

#: Rows copied at a time when the raw blocks become an ``.npy`` file.
COPY_ROWS = 256


def file_stems(names):
    """The file name (without suffix) of each layer name: characters other than letters,
    digits, ``.``, ``_``, ``-`` and ``@`` become ``_`` (ONNX node names such as
    ``/0/Gemm`` hold path separators), a name longer than 100 characters keeps 80 and a
    hash of the whole, and a stem already taken (ignoring case, for file systems that
    do) gets ``-k``, ``k`` the layer's position (or the next free number)."""
    import hashlib

    stems, taken = {}, set()
    for k, name in enumerate(names):
        stem = re.sub(r"[^A-Za-z0-9._@-]", "_", name)
        if stem.strip(".") == "":
            stem = "layer"
        if len(stem) > 100:
            stem = stem[:80] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        candidate, number = stem, k
        while candidate.casefold() in taken:
            candidate, number = f"{stem}-{number}", number + 1
        taken.add(candidate.casefold())
        stems[name] = candidate
    return stems


def check_capture_memory(count, layers, out_dir, name):
    """Refuse, before the run, the inputs of ``count`` model inputs that do not fit in
    memory (unless they are streamed to ``out_dir``)."""
    from fastrelu._core.memory import format_bytes, memory_limit

    total = 8 * count * sum(layer.n * layer.tokens for layer in layers)
    limit, source = memory_limit()
    if out_dir is None and limit is not None and total > limit:
        raise FastReluError(f"The '{name}' parameter must give layer inputs that fit in memory. Got {count:,} points whose inputs to the {len(layers)} layers need {format_bytes(total)}, but this machine has {format_bytes(limit)} for it ({source}). Pass out_dir= to stream them to memory-mapped files.")


@contextlib.contextmanager
def streaming(layers, out_dir):
    """The capture's files around its loop: fresh raw files for the layers (with
    ``out_dir``; nothing without), removed again when the loop raises."""
    if out_dir is None:
        yield
        return
    fresh_files(layers, out_dir)
    try:
        yield
    except BaseException:
        remove_files(layers, out_dir, ".raw")
        raise


def _path(out_dir, stems, name, suffix):
    return os.path.join(out_dir, stems[name] + suffix)


def fresh_files(layers, out_dir):
    """Empty raw files for the layers' inputs (nothing left from an earlier run)."""
    from fastrelu._core.io import output_directory

    output_directory(out_dir, "out_dir")
    stems = file_stems([layer.name for layer in layers])
    for layer in layers:
        open(_path(out_dir, stems, layer.name, ".raw"), "wb").close()


def remove_files(layers, out_dir, *suffixes):
    stems = file_stems([layer.name for layer in layers])
    for layer in layers:
        for suffix in suffixes:
            path = _path(out_dir, stems, layer.name, suffix)
            if os.path.exists(path):
                os.remove(path)


def flush(buffers, out_dir):
    """Move the batch just captured to disk (raw float64 per layer, appended); the
    buffers are keyed by layer name, in the layers' order."""
    sizes = {}
    stems = file_stems(list(buffers))
    for name, parts in buffers.items():
        block = np.concatenate(parts, axis=0)
        with open(_path(out_dir, stems, name, ".raw"), "ab") as handle:
            handle.write(np.ascontiguousarray(block).tobytes())
        sizes[name] = block.shape[0]
        parts.clear()
    return sizes


def stored_inputs(results, layers, out_dir):
    """The captured files as ``.npy`` memory maps (the raw blocks given a header); on
    an error, no file of the capture is left."""
    try:
        return _stored(results, layers, out_dir)
    except BaseException:
        remove_files(layers, out_dir, ".raw", ".npy")
        raise


def _stored(results, layers, out_dir):
    inputs = {}
    stems = file_stems([layer.name for layer in layers])
    for layer in layers:
        raw = _path(out_dir, stems, layer.name, ".raw")
        N = sum(sizes[layer.name] for sizes in results)
        path = _path(out_dir, stems, layer.name, ".npy")
        target = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(N, layer.n))
        with open(raw, "rb") as handle:
            for start in range(0, N, COPY_ROWS):
                stop = min(N, start + COPY_ROWS)
                target[start:stop] = np.frombuffer(handle.read(8 * (stop - start) * layer.n),
                                                   dtype=np.float64).reshape(stop - start, layer.n)
        target.flush()
        del target
        os.remove(raw)
        inputs[layer.name] = np.load(path, mmap_mode="r")
    return inputs
