"""How precisely the validation measures its noise ceiling: can "ceiling >= 0.8" pass every seed?

    python benchmarks/ceiling_power.py                      # the default validation: 13 x 6
    python benchmarks/ceiling_power.py --reruns 6 13 --reliability 0.85 0.9 0.95

The validation trains N mixtures once and R of them again on another data order, and
`ranking.noise_ceiling` turns the R differences into the Spearman ceiling. Here the truth is
known: each mixture's true score is drawn N(0, S^2), a run adds N(0, 1) noise (the reruns also a
common shift, as a data-order seed does), S set by the reliability S^2 / (S^2 + 1). Per
(reliability, R) the script prints the true Spearman ceiling, the estimate's median and 5-95 %
range over `--draws` simulated validations, how often the estimate reaches `--goal` on one
seed and on each of `--seeds` seeds (independent), and how often the ceiling's reported
interval holds the true ceiling. Gaussian scores; numpy and scipy only, seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parammix_core.ranking import CEILING_LEVEL, noise_ceiling


def validations(
    reliability: float, mixtures: int, reruns: int, draws: int, seed: int
) -> list[dict[str, float]]:
    """What `noise_ceiling` reports for `draws` simulated validations."""
    rng = np.random.default_rng(seed)
    spread = math.sqrt(reliability / (1 - reliability))  # noise sd 1
    out = []
    for _ in range(draws):
        true = rng.normal(0, spread, mixtures)
        runs = true + rng.normal(0, 1, mixtures)
        again = rng.choice(mixtures, reruns, replace=False)
        rerun = true[again] + rng.normal(0, 1, reruns) + rng.normal(0, 1)  # the seed's shift
        out.append(noise_ceiling(runs, runs[again], rerun))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reliability", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--mixtures", type=int, default=13)
    parser.add_argument("--reruns", type=int, nargs="+", default=[6])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--goal", type=float, default=0.8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"| reliability | true ceiling | N | R | estimate median [5 %, 95 %] "
        f"| P(>= {args.goal:g}) | P(>= {args.goal:g} on {args.seeds} seeds) "
        f"| interval holds the truth (nominal {CEILING_LEVEL:.0%}) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rel in args.reliability:
        true = 6 / math.pi * math.asin(rel / 2)  # Spearman of two run sets, Gaussian scores
        for r in args.reruns:
            found = validations(rel, args.mixtures, r, args.draws, args.seed)
            est = np.array([c["spearman"] for c in found])
            low, mid, high = np.quantile(est, [0.05, 0.5, 0.95])
            p = float((est >= args.goal).mean())
            held = np.mean([c["spearman_low"] <= true <= c["spearman_high"] for c in found])
            print(
                f"| {rel:g} | {true:.2f} | {args.mixtures} | {r} | {mid:.2f} [{low:.2f}, "
                f"{high:.2f}] | {p:.2f} | {p**args.seeds:.2f} | {held:.2f} |"
            )


if __name__ == "__main__":
    main()
