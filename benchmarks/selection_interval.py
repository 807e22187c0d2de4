"""The chosen mixture's interval when the mixture is picked as the best (review 38, issue 16).

    python benchmarks/selection_interval.py [--surfaces 100] [--peaks 0 0.1 0.3] [--seed 3]

Synthetic surfaces shaped like a merge search: K = 5 domains, 96 evaluated mixtures (vertices,
uniform, Dirichlet draws), 5 groups of one task with 100 documents each. A document's score is
its difficulty plus alpha . c_d, c_d ~ N(0, 0.5^2) per domain (a merge's per-document score is
smooth in the weights, and each document tilts it its own way), plus `peak` x alpha_0 for
every document: at peak 0 the population's surface is flat and any "beats uniform" is wrong.
The mixture is picked as `choose_mixture` picks it (the mean of the top 16 of a 5000-mixture
pool under least-squares surrogates), then its gain over uniform gets the plain central
bootstrap interval and the one simultaneous over the candidates (512 pool draws, the vertices
and the top 16; `uncertainty.gain_intervals`), both from the same 100 replicates. Prints, per
peak, how often each interval's low end is above zero ("beats uniform") and their widths.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from parammix_core import simplex
from parammix_core.config import EvalTask
from parammix_core.search.common import utility
from parammix_core.search.uncertainty import gain_intervals, group_scores
from parammix_core.surrogate import linear_fit

K, ROWS, DOCS, GROUPS, TOP = 5, 96, 100, 5, 16
TASKS = [EvalTask(name=f"t{g}", group=f"g{g}") for g in range(GROUPS)]
WEIGHTS = {t.group: 1.0 for t in TASKS}


def trial(rng: np.random.Generator, peak: float) -> tuple[bool, bool, float, float]:
    """One surface: (plain beats, simultaneous beats, plain width, simultaneous width)."""
    alphas = np.vstack(
        [simplex.vertices(K), simplex.uniform(K), rng.dirichlet(np.ones(K), ROWS - K - 1)]
    )
    per_doc = {
        t.name: rng.normal(0, 1, DOCS)[None, :]
        + alphas @ rng.normal(0, 0.5, (DOCS, K)).T
        + peak * alphas[:, :1]
        for t in TASKS
    }
    pool = simplex.sample_bounded(K, 5000, np.zeros(K), np.ones(K), seed=int(rng.integers(2**31)))
    scores = group_scores(per_doc, TASKS, {t.name: np.arange(DOCS) for t in TASKS})
    fitted = {g: linear_fit(alphas, y) for g, y in scores.items()}
    top = pool[np.argsort(-utility({g: f(pool) for g, f in fitted.items()}, WEIGHTS))[:TOP]]
    chosen, uniform = top.mean(axis=0), simplex.uniform(K)
    at = np.vstack([chosen, uniform])
    u = utility({g: f(at) for g, f in fitted.items()}, WEIGHTS)
    args = (alphas, per_doc, TASKS, WEIGHTS, chosen, {"uniform": uniform})
    rest = {
        "point": {"uniform": float(u[0] - u[1])},
        "fits": dict.fromkeys(WEIGHTS, linear_fit),
        "transform": lambda g, y: y,
        "seed": int(rng.integers(2**31)),
        "replicates": 100,
    }
    plain = gain_intervals(*args, **rest)["uniform"]
    band = np.vstack([pool[:512], simplex.vertices(K), top])
    both = gain_intervals(*args, **rest, candidates=band)["uniform"]
    return plain.low > 0, both.low > 0, plain.high - plain.low, both.high - both.low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--surfaces", type=int, default=100)
    parser.add_argument("--peaks", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    for peak in args.peaks:
        rng = np.random.default_rng(args.seed)
        start = time.perf_counter()
        res = np.array([trial(rng, peak) for _ in range(args.surfaces)])
        print(
            f"peak {peak}: 'beats uniform' plain {int(res[:, 0].sum())}/{args.surfaces}, "
            f"simultaneous {int(res[:, 1].sum())}/{args.surfaces}; mean width "
            f"{res[:, 2].mean():.4f} -> {res[:, 3].mean():.4f} "
            f"(x{res[:, 3].mean() / res[:, 2].mean():.2f}); {time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
