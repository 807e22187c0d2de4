"""How sure the multi-fidelity choice is: calibration of the GP's intervals (issues 16 and 19).

    python benchmarks/gp_interval.py --store /tmp/fid19/store-0 [--store ...]   # real runs
    python benchmarks/gp_interval.py --store ... --check 8                      # the choice's check
    python benchmarks/gp_interval.py --synthetic 20 [--offset 0] [--merges 40]  # known truth

Real runs (`--store`: stores of `benchmarks/search_fidelity.py`, only read): every real run at
the experts' budget the store holds is held out in turn; a GP over (mixture, fidelity) fitted on
every merge and every other run predicts it at fidelity 1, and the share of runs inside their
90 % predictive interval (run-to-run noise included) is printed for one noise variance shared
by merges and runs (`bayes.fit_gp`) beside one per fidelity (`level_noise.fit_levels_gp`, the
search's). Goal: within 10 points of 90 %. With `--check RUNS`, instead, the choice's held-out
check on the store's merges and its first RUNS real runs: R², the shuffle test's p-value and
the seconds it took.

Synthetic (`--synthetic N`, surfaces `--offset` to `--offset` + N - 1): N surfaces of 16 real
runs each (no merges, noise sd 0.01), flat or with a peak (a quadratic bowl 0.1 deep), searched
as `fidelities: [run]` does: the choice and its gain over uniform with the 90 % interval, four
ways: the GP's posterior (`MultiFidelityStrategy.gains`), widened by the GP's held-out errors
(`MultiFidelityStrategy.held_out`, five groups), widened and said to beat uniform only when the
GP predicts held-out runs better than their mean (R² > 0), and only when it also predicts them
better than every one of 19 shuffles of their utilities among their mixtures (what the choice's
verdict does). Printed: how often "beats uniform" is said (on a flat surface, wrongly) and how
often the interval holds the true gain. With `--merges M`, each surface also has M merges
(noise-free, fidelity 0) peaked where the peaked surfaces are, searched as `[merge, run]`
does: on the flat surfaces a cheap fidelity that misleads, on the peaked ones one that helps.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from parammix_core.config import load_experiment
from parammix_core.search import History, get_strategy, utility
from parammix_core.search.bayes import DTYPE, fit_gp
from parammix_core.search.level_noise import fit_levels_gp
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
    xm, ym, xr, yr = store_rows(url)
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


def store_rows(url: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GP inputs and utilities of a store's distinct merges (fidelity 0) and real runs at the
    experts' budget (fidelity 1)."""
    exp = load_experiment(None)
    store = Store(url)
    merges = rows_of(store, "evals").drop_duplicates([f"alpha.{d}" for d in exp.domains])
    runs = rows_of(store, "runevals")
    runs = runs[np.isclose(runs["fidelity"], 1.0)].drop_duplicates("run")
    xm, ym = inputs_and_utility(merges, 0.0, exp.domains, exp.evaluation.groups)
    xr, yr = inputs_and_utility(runs, 1.0, exp.domains, exp.evaluation.groups)
    return xm, ym, xr, yr


def choice_check(url: str, runs: int) -> None:
    """The choice's held-out check (five groups, 19 shuffles) on a store's merges and its
    first `runs` real runs (every one when 0), with its seconds."""
    xm, ym, xr, yr = store_rows(url)
    xr, yr = (xr[:runs], yr[:runs]) if runs else (xr, yr)
    x = np.r_[xm, xr]
    history = History(x[:, :-1], np.r_[ym, yr], None, x[:, -1])
    s = get_strategy("multifidelity", k=x.shape[1] - 1, seed=0, levels=(0.0, 1.0))
    start = time.perf_counter()
    checked = s.held_out(history, significance=(1 - LEVEL) / 2)
    print(
        f"{url}: {len(xm)} merges and {len(xr)} real runs: R2 {checked.r2:+.2f}, p "
        f"{checked.p:.2f} after {checked.shuffled} shuffles, widen {checked.widen:.2f}, "
        f"beats shuffles {checked.predicts((1 - LEVEL) / 2)}, "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )


def with_merges(x: np.ndarray, y: np.ndarray, merges: int, seed: int) -> History:
    """Real runs (fidelity 1) and, when merges > 0, that many merges (fidelity 0) peaked where
    the peaked surfaces are (the bowl plus 0.05): on a flat surface, a misleading cheap
    fidelity."""
    if not merges:
        return History(x, y, None, np.ones(len(x)))
    xm = np.random.default_rng(10_000 + seed).dirichlet(np.ones(3), merges)
    ym = 0.05 - 0.1 * ((xm - PEAK) ** 2).sum(axis=1)
    fidelity = np.r_[np.zeros(merges), np.ones(len(x))]
    return History(np.r_[xm, x], np.r_[ym, y], None, fidelity)


def synthetic(n: int, offset: int = 0, merges: int = 0) -> None:
    z = norm.ppf((1 + LEVEL) / 2)
    levels = (0.0, 1.0) if merges else (1.0,)
    rules = (
        "GP posterior",
        "widened",
        "widened, R2 > 0",
        "widened, R2 > 0 beating 19 shuffles (the choice's rule)",
    )
    out: dict[str, dict[str, list[tuple[bool, bool]]]] = {"flat": {}, "peak": {}}
    for seed in range(offset, offset + n):
        rng = np.random.default_rng(seed)
        x = rng.dirichlet(np.ones(3), 16)
        for kind, by_rule in out.items():
            bowl = -0.1 * ((x - PEAK) ** 2).sum(axis=1) if kind == "peak" else 0.0
            runs = with_merges(x, bowl + rng.normal(0.0, 0.01, 16), merges, seed)
            s = get_strategy("multifidelity", k=3, seed=0, levels=levels, num_restarts=4)
            chosen = s.choose(runs).alpha
            mean, sd = s.gains(runs, chosen, UNIFORM)
            checked = s.held_out(runs, significance=(1 - LEVEL) / 2)
            true = 0.1 * (((UNIFORM[0] - PEAK) ** 2).sum() - ((chosen - PEAK) ** 2).sum())
            true = true if kind == "peak" else 0.0
            gates = (True, True, checked.r2 > 0, checked.predicts((1 - LEVEL) / 2))
            widens = (1.0, checked.widen, checked.widen, checked.widen)
            for rule, widen, gate in zip(rules, widens, gates, strict=True):
                low, high = mean[0] - z * sd[0] * widen, mean[0] + z * sd[0] * widen
                by_rule.setdefault(rule, []).append((low > 0 and gate, low <= true <= high))
            print(
                f"  {kind} surface {seed}: gain {mean[0]:+.4f} (true {true:+.4f}), R2 "
                f"{checked.r2:+.2f}, p {checked.p:.2f} after {checked.shuffled} shuffles",
                flush=True,
            )
    for kind, by_rule in out.items():
        for rule, results in by_rule.items():
            said, held = np.array(results).sum(axis=0)
            print(
                f"{len(results)} {kind} surfaces, {rule}: beats uniform said on {said}, interval "
                f"holds the true gain on {held}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", action="append", default=[])
    p.add_argument("--synthetic", type=int, default=0, help="surfaces of each kind")
    p.add_argument("--offset", type=int, default=0, help="seed of the first surface")
    p.add_argument("--merges", type=int, default=0, help="merges peaked as the peaked runs")
    p.add_argument(
        "--check",
        type=int,
        default=None,
        metavar="RUNS",
        help="instead of coverage, the choice's held-out check on each store's merges and "
        "first RUNS real runs (0: all)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # botorch's L-BFGS retries
    pooled: dict[str, list[int]] = {}
    for url in args.store if args.check is None else []:
        for name, (inside, n) in held_out_runs(url).items():
            print(f"  {name:18s} {inside}/{n} inside ({inside / n:.0%})")
            pooled.setdefault(name, [0, 0])
            pooled[name][0] += inside
            pooled[name][1] += n
    for name, (inside, n) in pooled.items():
        print(f"pooled {name:18s} {inside}/{n} inside ({inside / n:.1%}; nominal {LEVEL:.0%})")
    for url in args.store if args.check is not None else []:
        choice_check(url, args.check)
    if args.synthetic:
        synthetic(args.synthetic, args.offset, args.merges)


if __name__ == "__main__":
    main()
