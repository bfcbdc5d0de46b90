"""Analyse an OPT-style pre-LayerNorm ReLU feed-forward block, trained on a toy task.

    python docs/examples/feedforward_report.py [OUT_DIR] [--d 64] [--hidden 256] [--steps 400]

The block is ``x + fc2(ReLU(fc1(LayerNorm(x))))`` on sequences of tokens in R^d, trained
with a fixed seed (a few seconds on a CPU) to map each token to ``x + tanh(A x)`` for a
fixed random ``A``. Its ReLU layer ``fc1`` reads the LayerNorm's output, so besides the
data domain of the captured tokens it is analysed on the exact set of every input the
LayerNorm can produce (THEORY §10): the sphere of radius sqrt(d) in the hyperplane
``sum(u) = 0``, mapped by ``gamma`` and ``beta``. Nothing is downloaded.
"""

import argparse

import numpy as np
import torch
from torch import nn

import fastrelu


class FeedForward(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def train(d, hidden, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    block = FeedForward(d, hidden)
    A = torch.randn(d, d, generator=generator) / np.sqrt(d)
    optimiser = torch.optim.Adam(block.parameters(), lr=3e-3)
    for _ in range(steps):
        x = torch.randn(32, 16, d, generator=generator)  # 32 sequences of 16 tokens
        loss = nn.functional.mse_loss(block(x), x + torch.tanh(x @ A.T))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return block.eval(), A, float(loss.detach())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="feedforward-report")
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    block, _, loss = train(args.d, args.hidden, args.steps, args.seed)
    print(f"trained block d={args.d}, hidden={args.hidden}: final loss {loss:.4f}")
    tokens = torch.randn(20, 16, args.d, generator=torch.Generator().manual_seed(args.seed + 1))
    report = fastrelu.analyze_model(block, tokens, samples=args.samples, seed=args.seed)
    paths, note = fastrelu.save_report(report, args.out)
    print(report.summary())
    (layer,) = report.layers
    sphere = layer.sphere
    print(f"{layer.name}: {layer.shape[0]} neurons on R^{layer.shape[1]}, {report.samples['heldout'].size} sequences "
          f"of {report.samples['layer0.injective'].size // report.samples['heldout'].size} tokens")
    print(f"  tokens at which the learned bias is injective: {layer.injective_fraction:.3f} (on R^d), "
          f"{sphere['injective_fraction']:.3f} (on the LayerNorm's image)")
    print(f"  neurons above the estimate: data {layer.fraction_above['data']:.3f}, "
          f"LayerNorm sphere {layer.fraction_above['layernorm_sphere']:.3f}")
    print(f"  held-out tokens injective with the sphere estimate as the bias: {sphere['heldout_fraction']:.3f}")
    print("written:", ", ".join(paths))
    if note:
        print(note)


if __name__ == "__main__":
    main()
