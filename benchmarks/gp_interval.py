"""How sure the multi-fidelity choice is: calibration of the GP's intervals (issues 16 and 19).

    python benchmarks/gp_interval.py --store /tmp/fid19/store-0 [--store ...]   # real runs
    python benchmarks/gp_interval.py --synthetic 20                             # known truth

Real runs (`--store`: stores of `benchmarks/search_fidelity.py`, only read): every real run at
the experts' budget the store holds is held out in turn; a GP over (mixture, fidelity) fitted on
every merge and every other run predicts it at fidelity 1, and the share of runs inside their
90 % predictive interval (run-to-run noise included) is printed for one noise variance shared
by merges and runs (`bayes.fit_gp`) beside one per fidelity (`multifidelity.fit_levels_gp`, the
search's). Goal: within 10 points of 90 %.

Synthetic (`--synthetic N`): N surfaces of 16 real runs each (no merges, noise sd 0.01),
flat or with a peak (a quadratic bowl 0.1 deep), searched as `fidelities: [run]` does: the
choice and its gain over uniform with the 90 % interval, three ways: the GP's posterior
(`MultiFidelityStrategy.gains`), widened by the GP's held-out errors
(`MultiFidelityStrategy.held_out`), and widened and said to beat uniform only when the GP
predicts held-out runs better than their mean (what the choice's verdict does). Printed: how
often "beats uniform" is said (on a flat surface, wrongly) and how often the interval holds the
true gain.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from parammix_core.config import load_experiment
from parammix_core.search import History, get_strategy, utility
from parammix_core.search.bayes import DTYPE, fit_gp
from parammix_core.search.multifidelity import fit_levels_gp
from parammix_core.store import ArtifactRef, Store

LEVEL = 0.9
PEAK = np.array([0.6, 0.2, 0.2])
UNIFORM = np.full((1, 3), 1 / 3)


def rows_of(store: Store, stage: str) -> pd.DataFrame:
    refs = sorted(
        (ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"]) for m in store.artifacts()),
        key=lambda r: r.key,
    )
    frames = [store.load_parquet(r, "rows.parquet") for r in refs if r.stage == stage]
    return pd.concat(frames, ignore_index=True)


def inputs_and_utility(rows: pd.DataFrame, fidelity: float, domains, groups):
    """GP inputs (N, K + 1) and the utility (N,) of evaluated rows."""
    x = rows[[f"alpha.{d}" for d in domains]].to_numpy(dtype=float)
    y = utility({g: rows[f"group.{g}"].to_numpy(dtype=float) for g in groups}, None)
    return np.c_[x, np.full(len(x), fidelity)], y


def held_out_runs(url: str) -> dict[str, tuple[int, int]]:
    """Per GP: (runs inside their predictive interval, runs) over the store's real runs."""
    exp = load_experiment(None)
    store = Store(url)
    merges = rows_of(store, "evals").drop_duplicates([f"alpha.{d}" for d in exp.domains])
    runs = rows_of(store, "runevals")
    runs = runs[np.isclose(runs["fidelity"], 1.0)].drop_duplicates("run")
    xm, ym = inputs_and_utility(merges, 0.0, exp.domains, exp.evaluation.groups)
    xr, yr = inputs_and_utility(runs, 1.0, exp.domains, exp.evaluation.groups)
    fits = {"one noise": fit_gp, "noise per fidelity": lambda x, y: fit_levels_gp(x, y, (0, 1))}
    z = norm.ppf((1 + LEVEL) / 2)
    inside = dict.fromkeys(fits, 0)
    for i in range(len(xr)):
        keep = np.arange(len(xr)) != i
        x = torch.tensor(np.r_[xm, xr[keep]], dtype=DTYPE)
        y = torch.tensor(np.r_[ym, yr[keep]], dtype=DTYPE)[:, None]
        for name, fit in fits.items():
            torch.manual_seed(0)
            model = fit(x, y)
            with torch.no_grad():
                post = model.posterior(
                    torch.tensor(xr[i : i + 1], dtype=DTYPE), observation_noise=True
                )
            inside[name] += abs(yr[i] - float(post.mean)) <= z * float(post.variance.sqrt())
    print(f"{url}: {len(xm)} merges, {len(xr)} real runs held out one at a time", flush=True)
    return {name: (int(n), len(xr)) for name, n in inside.items()}


def synthetic(n: int) -> None:
    z = norm.ppf((1 + LEVEL) / 2)
    rules = ("GP posterior", "widened", "widened, R2 > 0 (the choice's rule)")
    out: dict[str, dict[str, list[tuple[bool, bool]]]] = {"flat": {}, "peak": {}}
    for seed in range(n):
        rng = np.random.default_rng(seed)
        x = rng.dirichlet(np.ones(3), 16)
        for kind, by_rule in out.items():
            bowl = -0.1 * ((x - PEAK) ** 2).sum(axis=1) if kind == "peak" else 0.0
            runs = History(x, bowl + rng.normal(0.0, 0.01, 16), None, np.ones(16))
            s = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), num_restarts=4)
            chosen = s.choose(runs).alpha
            mean, sd = s.gains(runs, chosen, UNIFORM)
            checked = s.held_out(runs)
            true = 0.1 * (((UNIFORM[0] - PEAK) ** 2).sum() - ((chosen - PEAK) ** 2).sum())
            true = true if kind == "peak" else 0.0
            for rule, widen, gate in zip(
                rules, (1, checked.widen, checked.widen), (0, 0, 1), strict=True
            ):
                low, high = mean[0] - z * sd[0] * widen, mean[0] + z * sd[0] * widen
                beats = low > 0 and (checked.predicts or not gate)
                by_rule.setdefault(rule, []).append((beats, low <= true <= high))
    for kind, by_rule in out.items():
        for rule, results in by_rule.items():
            said, held = np.array(results).sum(axis=0)
            print(
                f"{n} {kind} surfaces, {rule}: beats uniform said on {said}, interval holds "
                f"the true gain on {held}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", action="append", default=[])
    p.add_argument("--synthetic", type=int, default=0, help="surfaces of each kind")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # botorch's L-BFGS retries
    pooled: dict[str, list[int]] = {}
    for url in args.store:
        for name, (inside, n) in held_out_runs(url).items():
            print(f"  {name:18s} {inside}/{n} inside ({inside / n:.0%})")
            pooled.setdefault(name, [0, 0])
            pooled[name][0] += inside
            pooled[name][1] += n
    for name, (inside, n) in pooled.items():
        print(f"pooled {name:18s} {inside}/{n} inside ({inside / n:.1%}; nominal {LEVEL:.0%})")
    if args.synthetic:
        synthetic(args.synthetic)


if __name__ == "__main__":
    main()
