"""Analyse every ReLU layer of a small CNN trained on scikit-learn's bundled digits data.

    python docs/examples/model_report.py [OUT_DIR] [--samples 10000] [--epochs 12]

Trains the Conv-BN-ReLU, Conv-BN-ReLU, pooling, Linear network of ``fastrelu.digits_cnn``
with a fixed seed (a few seconds on a CPU), then writes fastrelu's layer-by-layer report
of its two convolutional ReLU layers (JSON, per-point arrays and figures) for the test
images, with the training images fitting the data-driven bias estimates. Each layer is
analysed on the inputs it receives (the model's own activations), with its batch norm
folded in; the channel-wise estimates of the shared biases are printed too (THEORY §10).
Also exports the model to ONNX (when onnx is installed) and checks that the ONNX route
finds the same layers. Nothing is downloaded.
"""

import argparse
import os
import tempfile
import warnings

import numpy as np

import fastrelu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="cnn-report")
    parser.add_argument("--samples", type=int, default=10_000, help="MCBE samples on the ball per layer")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    digits = fastrelu.digits_cnn(seed=args.seed, epochs=args.epochs)
    print(f"digits CNN: test accuracy {digits.accuracy:.4f}")
    found = fastrelu.relu_layers(digits.model, digits.X_test[:1])
    for layer in found:
        print(f"  {layer.name}: {layer.kind} on {layer.input_shape} -> {layer.output_shape}, "
              f"batch norm {layer.batchnorm!r} folded, ReLU {layer.relu!r}")
    report = fastrelu.analyze_model(digits.model, digits.X_test, labels=digits.y_test,
                                    fit_data=digits.X_train, samples=args.samples, seed=args.seed,
                                    progress=None)
    paths, note = fastrelu.save_report(report, args.out)
    print(report.summary())
    for layer in report.layers:
        print(f"layer {layer.name}: fraction of neurons above each estimate "
              + ", ".join(f"{k} {v:.3f}" for k, v in layer.fraction_above.items()))
        print("  fraction of channels above the channel-wise estimate "
              + ", ".join(f"{k} {v:.3f}" for k, v in layer.channel_fraction_above.items()))
        print("  seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in layer.stage_seconds.items()))
    print("written:", ", ".join(paths))
    if note:
        print(note)
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError:
        return
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation note
        path = os.path.join(folder, "cnn.onnx")
        torch.onnx.export(digits.model, (torch.from_numpy(digits.X_test[:1]),), path, dynamo=False,
                          do_constant_folding=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
        by_onnx = fastrelu.relu_layers(path, digits.X_test[:1])
        same = all(np.allclose(a.layer.weight, b.layer.weight, rtol=1e-6, atol=1e-9)
                   for a, b in zip(found, by_onnx))
        print(f"ONNX route: layers {by_onnx.names()}, the same rows as PyTorch's: {same}")


if __name__ == "__main__":
    main()
