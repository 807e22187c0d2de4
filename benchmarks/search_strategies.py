"""How many evaluations each search strategy needs to reach 99 % of the best utility.

Two settings, each averaged over seeds and printed as a ratio to random search:

- pool: a fixed pool of evaluated merge candidates (a rows.parquet with `alpha.<domain>` and
  `group.<g>` columns; utility = mean of the group columns). Every proposal is snapped to the
  nearest (L2) not-yet-evaluated pool candidate, whose stored utility is the evaluation. MixMin
  and MergeMix need the experts themselves (log-probs on target data, a differentiable merged
  loss), not pool scores: not applicable there.
- synthetic: known optima on the simplex, evaluated exactly. "quadratic" is an anisotropic bowl
  (the model-free strategies: random, surrogate, demix, bayes); "mixture-nll" is -NLL of
  target data under a mixture of four synthetic experts' predictive distributions, where
  MixMin's input (the experts' log-probs) and MergeMix's input (a differentiable loss of alpha)
  exist, so all six strategies run.
  On "mixture-nll" the utility *is* MixMin's and MergeMix's objective: their counts show the
  one-shot cost, not a fair race.

"99 %" is relative to the range, since utilities can be negative or tiny:
reached when u >= best - 0.01 * (best - min), best/min over the pool (or a dense sample and
the known optimum). A run that does not reach it within the budget counts as the budget
(marked with '>' in the output).

    python benchmarks/search_strategies.py [--pool PATH] [--seeds 10] [--budget 256] [--batch 4]
    python benchmarks/search_strategies.py --only round-cost   # seconds per flow round
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from parammix_core import simplex
from parammix_core.search import History, Strategy, get_strategy
from parammix_core.search.mixmin import mixmin, mixture_nll

MODEL_FREE = ["random", "surrogate", "demix", "bayes"]
SETTINGS: dict[str, dict] = {
    "random": {},
    "surrogate": {"n_candidates": 4096},
    "demix": {},  # the default schedule 32 -> 16 -> 8, then the final mean; uniform prior
    "bayes": {"num_restarts": 4, "raw_samples": 128},
}


@dataclass
class Outcome:
    evaluations: list[int]  # per seed
    censored: int  # seeds that never reached the target
    seconds_per_proposal: float


def race(
    make: Callable[[int], Strategy],
    evaluator: PoolEvaluator | ExactEvaluator,
    target: float,
    k: int,
    seeds: int,
    budget: int,
    batch: int,
) -> Outcome:
    """Evaluations until the utility reaches `target`, per seed."""
    counts, censored, seconds, proposals = [], 0, 0.0, 0
    for seed in range(seeds):
        evaluator.reset()
        start = time.perf_counter()
        strategy = make(seed)  # one-shot strategies do their work here: count it
        seconds += time.perf_counter() - start
        h = History.empty(k)
        reached = None
        while h.n < budget and reached is None:
            n = min(batch, budget - h.n)
            start = time.perf_counter()
            x = strategy.propose(h, n)
            seconds += time.perf_counter() - start
            proposals += n
            x, u = evaluator(x)
            hit = np.flatnonzero(u >= target)
            if hit.size:
                reached = h.n + int(hit[0]) + 1
            h = h.add(x, u)
        counts.append(reached if reached is not None else budget)
        censored += reached is None
    return Outcome(counts, censored, seconds / max(proposals, 1))


class PoolEvaluator:
    """Snaps proposals to the nearest not-yet-evaluated pool rows and returns their utility."""

    def __init__(self, x: np.ndarray, u: np.ndarray):
        self.x, self.u = x, u  # (P, K), (P,)
        self.taken = np.zeros(len(u), dtype=bool)

    def reset(self) -> None:
        self.taken[:] = False

    def __call__(self, proposals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picks = []
        for p in proposals:
            d = ((self.x - p) ** 2).sum(axis=1)
            d[self.taken] = np.inf
            i = int(d.argmin())
            self.taken[i] = True
            picks.append(i)
        return self.x[picks], self.u[picks]


class ExactEvaluator:
    """Evaluates a known function at the proposals themselves."""

    def __init__(self, f: Callable[[np.ndarray], np.ndarray]):
        self.f = f

    def reset(self) -> None:
        pass

    def __call__(self, proposals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return proposals, self.f(proposals)


def report(
    title: str, outcomes: dict[str, Outcome | str], budget: int, uniform: float | None = None
) -> None:
    """One row per strategy; `uniform` adds the ratio to a uniformly random pool order."""
    print(f"\n== {title}")
    extra = f" {'vs pool order':>14}" if uniform else ""
    print(
        f"{'strategy':<10} {'evals to 99%':>16} {'ratio vs random':>16}{extra} {'s/proposal':>11}"
    )
    base = outcomes["random"]
    assert isinstance(base, Outcome)
    for name, o in outcomes.items():
        if isinstance(o, str):
            blank = f" {'n/a':>14}" if uniform else ""
            print(f"{name:<10} {'n/a':>16} {'n/a':>16}{blank} {'':>11}  {o}")
            continue
        mean = float(np.mean(o.evaluations))
        mark = ">" if o.censored else " "
        cell = f"{mark}{mean:6.1f} ± {np.std(o.evaluations):5.1f}"
        ratio = float(np.mean(base.evaluations)) / mean
        note = f"  ({o.censored} seed(s) hit the budget {budget})" if o.censored else ""
        vs = f" {uniform / mean:>13.2f}x" if uniform else ""
        print(f"{name:<10} {cell:>16} {ratio:>15.2f}x{vs} {o.seconds_per_proposal:>11.3f}{note}")


def find_pool(path: str | None, store: str | None, rows: int) -> str | None:
    """The pool to search: `--pool`, else the newest evaluated-rows table of `--store` with
    `rows` rows (a store a `parammix run --set search.n_mixtures=ROWS` filled)."""
    if path:
        if not Path(path).is_file():
            raise SystemExit(f"error: --pool {path}: no such file")
        return path
    if store is None:
        return None
    if not Path(store).is_dir():
        raise SystemExit(f"error: --store {store}: no such folder")
    found = sorted(
        glob.glob(f"{store}/surrogates/*/*/rows.parquet"), key=os.path.getmtime, reverse=True
    )
    return next((p for p in found if len(pd.read_parquet(p, columns=None)) == rows), None)


def pool_benchmark(path: str, seeds: int, budget: int, batch: int) -> None:
    df = pd.read_parquet(path)
    alpha_cols = [c for c in df.columns if c.startswith("alpha.")]
    group_cols = [c for c in df.columns if c.startswith("group.") and not c.endswith(".stderr")]
    x = df[alpha_cols].to_numpy(dtype=float)
    x = x / x.sum(axis=1, keepdims=True)
    u = df[group_cols].to_numpy(dtype=float).mean(axis=1)  # (P,)
    best, worst = u.max(), u.min()
    target = best - 0.01 * (best - worst)
    hits = int((u >= target).sum())
    k = len(alpha_cols)
    print(
        f"\npool: {path}: {len(df)} candidates, K={k} ({', '.join(alpha_cols)}), "
        f"utility = mean of {len(group_cols)} groups in [{worst:.4f}, {best:.4f}]; "
        f"target {target:.4f} reached by {hits} candidate(s); "
        f"uniformly random order needs {(len(u) + 1) / (hits + 1):.1f} evals on average "
        "(the random strategy's Dirichlet draws, snapped, are not uniform over the pool)"
    )
    outcomes: dict[str, Outcome | str] = {}
    for name in MODEL_FREE:
        outcomes[name] = race(
            lambda s, n=name: get_strategy(n, k=k, seed=s, **SETTINGS[n]),
            PoolEvaluator(x, u),
            target,
            k,
            seeds,
            min(budget, len(u)),
            batch,
        )
    for name in ("mixmin", "mergemix"):
        outcomes[name] = (
            "needs the experts (log-probs / differentiable merged loss), not pool scores"
        )
    report(
        f"pool ({seeds} seeds, batch {batch}, budget {min(budget, len(u))})",
        outcomes,
        budget,
        uniform=(len(u) + 1) / (hits + 1),
    )


def quadratic_benchmark(seeds: int, budget: int, batch: int) -> None:
    k = 4
    opt = np.array([0.1, 0.5, 0.25, 0.15])
    a = np.diag([1.0, 3.0, 0.5, 2.0])

    def f(x: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(x) - opt
        return -np.einsum("nk,kl,nl->n", d, a, d)

    worst = f(simplex.dirichlet(k, 100_000, seed=123)).min()
    target = 0.0 - 0.01 * (0.0 - worst)
    outcomes: dict[str, Outcome | str] = {
        n: race(
            lambda s, n=n: get_strategy(n, k=k, seed=s, **SETTINGS[n]),
            ExactEvaluator(f),
            target,
            k,
            seeds,
            budget,
            batch,
        )
        for n in MODEL_FREE
    }
    for name in ("mixmin", "mergemix"):
        outcomes[name] = "needs experts' log-probs / a differentiable loss; a bowl has neither"
    report(
        f"synthetic quadratic, K=4, optimum {opt.tolist()} ({seeds} seeds, batch {batch})",
        outcomes,
        budget,
    )


def mixture_nll_benchmark(seeds: int, budget: int, batch: int) -> None:
    k = 4
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(40, 0.3), size=k)  # (K, V): each expert's predictive distribution
    true = np.array([0.45, 0.05, 0.35, 0.15])
    tokens = rng.choice(40, size=4000, p=true @ p)  # (S,)
    logprobs = np.log(p[:, tokens])  # (K, S)
    opt = mixmin(logprobs, steps=2000, lr=1.0)

    def f(x: np.ndarray) -> np.ndarray:
        return np.array([-mixture_nll(logprobs, row) for row in np.atleast_2d(x)])

    best = f(opt)[0]
    worst = f(simplex.dirichlet(k, 20_000, seed=123)).min()
    target = best - 0.01 * (best - worst)
    lp = torch.tensor(logprobs, dtype=torch.float64)

    def torch_nll(alpha: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(lp + torch.log(alpha.clamp_min(1e-300))[:, None], dim=0).mean()

    makers: dict[str, Callable[[int], Strategy]] = {
        n: (lambda s, n=n: get_strategy(n, k=k, seed=s, **SETTINGS[n])) for n in MODEL_FREE
    }
    makers["mixmin"] = lambda s: get_strategy("mixmin", k=k, seed=s, logprobs=logprobs)
    makers["mergemix"] = lambda s: get_strategy("mergemix", k=k, seed=s, objective=torch_nll)
    outcomes: dict[str, Outcome | str] = {
        n: race(m, ExactEvaluator(f), target, k, seeds, budget, batch) for n, m in makers.items()
    }
    report(
        f"synthetic mixture-NLL, K=4, optimum {np.round(opt, 3).tolist()} "
        f"({seeds} seeds, batch {batch})",
        outcomes,
        budget,
    )


def round_cost_benchmark(rows: int = 80) -> None:
    """Seconds one flow round costs each model-free strategy at the default config's settings:
    `search.batch_size` proposals from `rows` scored mixtures (the flow's fifth round)."""
    from parammix_core.config import Experiment
    from parammix_core.search import History, strategy_from_config

    exp = Experiment()
    k, n = len(exp.domains), exp.search.batch_size
    x = simplex.dirichlet(k, rows, seed=1)  # (rows, K)
    y = -((x - np.array([0.4, 0.3, 0.2, 0.1])) ** 2).sum(axis=1)
    print(f"\n== one round at the default settings: {n} proposals from {rows} rows, K={k}")
    for name in MODEL_FREE:
        strategy = strategy_from_config(
            exp.search.model_copy(update={"strategy": name}), exp.domains, 0
        )
        start = time.perf_counter()
        strategy.propose(History(x, y), n)
        print(f"{name:<10} {time.perf_counter() - start:8.2f} s per round")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", help="a rows.parquet of evaluated merges to search")
    ap.add_argument(
        "--store", help="or a local store: its newest rows.parquet with --pool-rows rows"
    )
    ap.add_argument("--pool-rows", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--only", choices=["pool", "quadratic", "mixture-nll", "round-cost"], action="append"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = set(args.only or ["pool", "quadratic", "mixture-nll"])
    if "pool" in only:
        path = find_pool(args.pool, args.store, args.pool_rows)
        if path is None:
            where = f"in {args.store}" if args.store else "(give --pool or --store)"
            print(f"\npool: no rows.parquet with {args.pool_rows} rows {where}; skipped")
        else:
            pool_benchmark(path, args.seeds, args.budget, args.batch)
    if "quadratic" in only:
        quadratic_benchmark(args.seeds, args.budget, args.batch)
    if "mixture-nll" in only:
        mixture_nll_benchmark(args.seeds, args.budget, args.batch)
    if "round-cost" in only:
        round_cost_benchmark()


if __name__ == "__main__":
    main()
