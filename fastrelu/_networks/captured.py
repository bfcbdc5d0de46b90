"""Captured layer inputs streamed to disk (``out_dir`` of :func:`fastrelu.capture`, for
PyTorch and ONNX models): raw float64 blocks appended batch by batch, then given an
``.npy`` header and returned as memory maps."""

import os

import numpy as np

#: Rows copied at a time when the raw blocks become an ``.npy`` file.
COPY_ROWS = 256


def fresh_files(layers, out_dir):
    """Empty raw files for the layers' inputs (nothing left from an earlier run)."""
    from fastrelu._core.io import output_directory

    output_directory(out_dir, "out_dir")
    for layer in layers:
        open(os.path.join(out_dir, f"{layer.name}.raw"), "wb").close()


def remove_files(layers, out_dir, suffix):
    for layer in layers:
        path = os.path.join(out_dir, f"{layer.name}{suffix}")
        if os.path.exists(path):
            os.remove(path)


def flush(buffers, out_dir):
    """Move the batch just captured to disk (raw float64 per layer, appended)."""
    sizes = {}
    for name, parts in buffers.items():
        block = np.concatenate(parts, axis=0)
        with open(os.path.join(out_dir, f"{name}.raw"), "ab") as handle:
            handle.write(np.ascontiguousarray(block).tobytes())
        sizes[name] = block.shape[0]
        parts.clear()
    return sizes


def stored_inputs(results, layers, out_dir):
    """The captured files as ``.npy`` memory maps (the raw blocks given a header)."""
    inputs = {}
    for layer in layers:
        raw = os.path.join(out_dir, f"{layer.name}.raw")
        N = sum(sizes[layer.name] for sizes in results)
        path = os.path.join(out_dir, f"{layer.name}.npy")
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
