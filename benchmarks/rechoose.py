"""The multi-fidelity choice rules on searches already run: posterior mean vs its lower bound.

    python benchmarks/rechoose.py --seed 5 --dir /tmp/fidelity --out /tmp/rechoose
    python benchmarks/rechoose.py --seed 0 --dir /tmp/fidelity --out /tmp/rechoose \\
        --code /tmp/snapshot-53db141        # stores made by an older checkout
    python benchmarks/rechoose.py --summarise /tmp/rechoose --dir /tmp/fidelity

For one experiment seed of a `benchmarks/search_fidelity.py --long` folder, the multifidelity
and real searches of budgets 8 and 16 run again through the flow with the code that ran them
(`--code`, a checkout or `git archive` snapshot; default this one), so every artifact is a
cache hit: the script stops if a search stores anything new, since that would be another
search. The evaluations each choice saw are captured and the choice is recomputed from the same
GP two ways: the argmax of the posterior mean at the top fidelity (it must equal the stored
choice) and the argmax of the lower end of its central 90 % interval (mean - 1.645 sd). Each
lower-bound choice that moved (L1 >= 1e-3) is trained at the final budget on the seed's two
grading seeds, as `search_fidelity.py` grades (uniform and natural are cached).

A search runs with the validation's runs the store holds joined as free observations, so the
replay joins what the search joined: none below `--joined-from` (16: `search_fidelity.py`
before be7fa30 ran every budget-8 search before real runs alone trained uniform, the
validation's first run, and every budget-16 search after).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from fidelity_tables import mean_of

ROOT = Path(__file__).resolve().parents[1]
Z90 = 1.6448536269514722  # the lower end of a central 90 % interval
SEARCHES = ("multifidelity", "real")
BUDGETS = (8, 16)


def load_benchmark(code: Path):
    """`search_fidelity.py` of the checkout that ran the searches, with its code importable."""
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location("sf", code / "benchmarks/search_fidelity.py")
    sf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sf)
    sf.LONG[0], sf.CONFIG[0] = True, None
    return sf


def search_overrides(sf, strategy: str, budget: int) -> list[str]:
    mf = "search.strategies.multifidelity"
    if hasattr(sf, "SEARCHES"):
        return ["search.strategy=multifidelity", *sf.SEARCHES[strategy], f"{mf}.budget={budget}"]
    fidelities = sf.FIDELITIES[strategy]  # checkouts before the searches were named
    return [
        "search.strategy=multifidelity",
        f"{mf}.fidelities={fidelities}",
        f"{mf}.budget={budget}",
    ]


def lower_bound_choice(gp, history, model):
    """argmax of mean - Z90 sd at the top level, with the GP the mean's choice fitted."""
    import torch
    from botorch.acquisition import FixedFeatureAcquisitionFunction
    from botorch.acquisition.analytic import AnalyticAcquisitionFunction
    from botorch.utils.transforms import t_batch_mode_transform

    from parammix_core.search.base import project

    class LowerBound(AnalyticAcquisitionFunction):
        @t_batch_mode_transform(expected_q=1)
        def forward(self, X):
            mean, sigma = self._mean_and_sigma(X)
            return (mean - Z90 * sigma).squeeze(-1)

    top = float(gp.levels[-1])
    acq = FixedFeatureAcquisitionFunction(LowerBound(model=model), gp.k + 1, [gp.k], [top])
    seed = gp._rng_seed(history)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cand, _ = gp._maximise(acq, seed, extra_starts=history.x)
    return project(cand.numpy(), gp.lo, gp.hi)[0]


def fitted(gp, history):
    """The choice's GP: through `_fit` where the checkout has it, else as its `choose` fitted."""
    import torch

    from parammix_core.search import multifidelity as mfm

    if hasattr(gp, "_fit"):
        return gp._fit(history)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(gp._rng_seed(history))
        x = mfm._inputs(history.x, history.fidelities)
        return mfm.fit_gp(x, torch.tensor(history.y, dtype=mfm.DTYPE)[:, None])


def both_choices(exp, store, evals) -> dict[str, np.ndarray]:
    """The mean's and the lower bound's choice from the history the search's choice saw."""
    from parammix_core.search import search_bounds
    from parammix_core.search.multifidelity import MultiFidelityStrategy
    from parammix_core.stages import multifidelity as mfs

    seen, _ = mfs.history(exp, store, evals)
    lo, hi = search_bounds(exp.domains, exp.search.bounds)
    cfg = exp.search.strategies.multifidelity
    effort = {"num_restarts": cfg.num_restarts, "raw_samples": cfg.raw_samples}
    gp = MultiFidelityStrategy(len(exp.domains), lo, hi, exp.seed, mfs.levels(exp), **effort)
    if getattr(gp, "choice", "mean") != "mean":  # checkouts with the choice setting
        gp.choice = "mean"
    mean = gp.choose(seen).alpha
    return {"mean": mean, "lower_bound": lower_bound_choice(gp, seen, fitted(gp, seen))}


def replay(seed: int, folder: Path, out: Path, code: Path, joined_from: int) -> None:
    sf = load_benchmark(code)
    from prefect.testing.utilities import prefect_test_harness

    import flows.multifidelity as fm
    from flows.param_mix import param_mix
    from parammix_core import stages

    seen, join = {}, [True]
    choose, joined = fm.choose_at_fidelity, fm.joined_runs

    def capture(exp, data, evals):
        seen["exp"], seen["evals"] = exp, list(evals)
        return choose(exp, data, evals)

    fm.choose_at_fidelity = capture
    fm.joined_runs = lambda exp, data, base: joined(exp, data, base) if join[0] else []
    store = folder / f"store-{seed}"
    stored = {
        f"{s['strategy']}@{s['budget']}": s["alpha"]
        for s in json.loads((folder / f"seed-{seed}.json").read_text())["searches"]
    }
    rows = {}
    with prefect_test_harness(server_startup_timeout=180):
        for budget in BUDGETS:
            for strategy in SEARCHES:
                name, join[0] = f"{strategy}@{budget}", budget >= joined_from
                exp = sf.experiment(store, seed, *search_overrides(sf, strategy, budget))
                st = stages.open_store(exp)
                before = sum(1 for _ in st.artifacts())
                param_mix(exp, return_state=True).result()
                if sum(1 for _ in st.artifacts()) != before:
                    raise SystemExit(
                        f"error: {name} of seed {seed} stored new artifacts: not a replay"
                    )
                ran = getattr(exp.search.strategies.multifidelity, "choice", "mean")
                choices = both_choices(seen["exp"], st, seen["evals"])
                want = np.array([stored[name][d] for d in exp.domains])
                if np.abs(choices[ran] - want).sum() > 1e-6:
                    raise SystemExit(
                        f"error: {name} of seed {seed}: its {ran} choice is not stored"
                    )
                rows[name] = {
                    "evaluations": len(seen["evals"]),
                    "ran": ran,
                    **{
                        r: dict(zip(exp.domains, map(float, a), strict=True))
                        for r, a in choices.items()
                    },
                    "moved": float(np.abs(choices["lower_bound"] - choices["mean"]).sum()),
                }
                print(name, json.dumps(rows[name]), flush=True)
    moved = {
        f"{n}-{other(r['ran'])}": r[other(r["ran"])] for n, r in rows.items() if r["moved"] >= 1e-3
    }
    graded = sf.grade(store, seed, moved, 2)
    out.mkdir(parents=True, exist_ok=True)
    result = {"seed": seed, "choices": rows, "graded": graded}
    (out / f"seed-{seed}.json").write_text(json.dumps(result, indent=1))


def other(rule: str) -> str:
    return "mean" if rule == "lower_bound" else "lower_bound"


def summarise(out: Path, folder: Path) -> None:
    """Per seed and search: both rules' real gain over uniform; then over seeds, and the
    multifidelity - real differences under each rule."""
    gains: dict[str, dict[str, dict[int, float]]] = {"mean": {}, "lower_bound": {}}
    print(
        "| seed | search | N | lower bound's choice (code / math / sft / web) | moved (L1) "
        "| mean's gain vs uniform | lower bound's |"
    )
    print("| ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for path in sorted(out.glob("seed-*.json")):
        new = json.loads(path.read_text())
        seed = new["seed"]
        old = json.loads((folder / f"seed-{seed}.json").read_text())["graded"]
        uniform = mean_of(old["uniform"])["utility"]
        for name, row in new["choices"].items():
            ran = mean_of(old[name])["utility"] - uniform
            graded = new["graded"].get(f"{name}-{other(row['ran'])}")
            rechosen = ran if graded is None else mean_of(graded)["utility"] - uniform
            gains[row["ran"]].setdefault(name, {})[seed] = ran
            gains[other(row["ran"])].setdefault(name, {})[seed] = rechosen
            before, after = gains["mean"][name][seed], gains["lower_bound"][name][seed]
            alpha = " / ".join(
                f"{row['lower_bound'][d]:.2f}" for d in ("code", "math", "sft", "web")
            )
            strategy, budget = name.split("@")
            print(
                f"| {seed} | {strategy} | {budget} | {alpha} | {row['moved']:.3f} "
                f"| {before:+.4f} | {after:+.4f} |"
            )
    print()
    for rule, by_name in gains.items():
        for name, by_seed in sorted(by_name.items()):
            v = list(by_seed.values())
            print(
                f"{rule:11s} {name:16s} gain vs uniform {statistics.mean(v):+.4f} "
                f"± {statistics.stdev(v):.4f}, worst {min(v):+.4f} (n = {len(v)})"
            )
    for rule, by_name in gains.items():
        for budget in BUDGETS:
            a, b = by_name[f"multifidelity@{budget}"], by_name[f"real@{budget}"]
            d = [a[s] - b[s] for s in sorted(a.keys() & b.keys())]
            t = statistics.mean(d) / (statistics.stdev(d) / len(d) ** 0.5)
            print(
                f"{rule:11s} N={budget}: multifidelity - real {statistics.mean(d):+.4f} ± "
                f"{statistics.stdev(d):.4f} over {len(d)} seeds, paired t {t:+.1f}, "
                f"ahead on {sum(x > 0 for x in d)}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, help="replay this experiment seed's searches")
    p.add_argument("--dir", type=Path, required=True, help="the search_fidelity.py folder")
    p.add_argument("--out", type=Path, help="folder of this script's results")
    p.add_argument("--code", type=Path, default=ROOT, help="the checkout that ran the searches")
    p.add_argument("--joined-from", type=int, default=16, help="first budget that joined runs")
    p.add_argument("--summarise", type=Path, help="print the tables of a results folder")
    args = p.parse_args()
    if args.summarise:
        summarise(args.summarise, args.dir)
        return
    if args.seed is None or args.out is None:
        p.error("give --seed and --out, or --summarise")
    import torch

    torch.set_num_threads(1)
    replay(args.seed, args.dir, args.out, args.code.resolve(), args.joined_from)


if __name__ == "__main__":
    main()
