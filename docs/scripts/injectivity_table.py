"""Fraction of random Gaussian layers ``ReLU(W x)`` that are injective, decided exactly.

For every input dimension ``n`` and redundancy ``m / n`` the script draws ``--trials``
matrices ``W`` with i.i.d. standard normal entries (shape ``(m, n)``) and counts how
many :func:`fastrelu.verify_injective` finds injective. Cell ``(n, r)`` draws from
``numpy.random.default_rng((seed, n, r))``, so every cell is reproducible on its own.
A cell whose matrices need more subsets than the budget is reported as such, never
estimated. Prints a Markdown table (fractions, the linearly interpolated 50% point of
each row, and the run time).

    python docs/scripts/injectivity_table.py --trials 200 --seed 0
"""

import argparse
import math
import sys
import time

import numpy as np

import fastrelu as fr
from fastrelu._injectivity.verify import default_max_subsets


def fraction_injective(n, ratio, trials, seed, max_subsets):
    """Fraction of ``trials`` Gaussian ``(ratio n, n)`` matrices that are injective, or
    None when one matrix needs more than ``max_subsets`` subsets."""
    m = ratio * n
    budget = default_max_subsets(n) if max_subsets is None else max_subsets
    if math.comb(m, n - 1) > budget:
        return None
    rng = np.random.default_rng((seed, n, ratio))
    injective = 0
    for _ in range(trials):
        W = rng.standard_normal((m, n))
        injective += fr.verify_injective(W, max_subsets=max_subsets).injective
    return injective / trials


def half_point(ratios, fractions):
    """The redundancy where the fraction first reaches 1/2 (linear interpolation)."""
    pairs = [(r, f) for r, f in zip(ratios, fractions) if f is not None]
    for (r0, f0), (r1, f1) in zip(pairs, pairs[1:]):
        if f0 < 0.5 <= f1:
            return r0 + (0.5 - f0) * (r1 - r0) / (f1 - f0)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="matrices per cell (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 4, 5, 6], help="input dimensions n")
    parser.add_argument("--ratios", type=int, nargs="+", default=list(range(2, 11)), help="redundancies m / n")
    parser.add_argument("--max-subsets", type=int, default=None,
                        help="budget per matrix (default: verify_injective's)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    header = "| n | " + " | ".join(f"m/n = {r}" for r in args.ratios) + " | 50% at m/n |"
    lines = [header, "|" + " --- |" * (len(args.ratios) + 2)]
    for n in args.dims:
        fractions = []
        for ratio in args.ratios:
            fractions.append(fraction_injective(n, ratio, args.trials, args.seed, args.max_subsets))
            print(f"n = {n}, m/n = {ratio}: {fractions[-1]} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr)
        cells = ["over budget" if f is None else f"{f:.3f}" for f in fractions]
        half = half_point(args.ratios, fractions)
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {'-' if half is None else f'{half:.2f}'} |")
    print("\n".join(lines))
    print(f"\n{args.trials} trials per cell, seed {args.seed}, "
          f"{time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
