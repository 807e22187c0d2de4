"""The tables of a `search_fidelity.py` folder: per seed and search what it spent, chose and
gained over uniform when trained for real; the searches' paired differences over seeds; and the
headroom, how much any search could have won.

    python benchmarks/search_fidelity.py --summarise /tmp/fidelity
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def summarise(folder: Path) -> None:
    """Per seed and search: spent, evaluations, chosen mixture, real gain over uniform."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("seed-*.json"))]
    gains: dict[str, dict[int, float]] = {}  # search@budget -> seed -> gain over uniform
    ses: dict[str, dict[int, float]] = {}  # standard error of each choice's grading-run mean
    print(
        "| seed | search | N | spent | merges | runs | chosen | utility | gain vs uniform "
        "| gain vs natural | mean loss gain vs uniform |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        graded = r["graded"]
        uni, nat = mean_of(graded["uniform"]), mean_of(graded["natural"])
        for s in r["searches"]:
            name = f"{s['strategy']}@{s['budget']}"
            g = mean_of(graded[name])
            runs = [x["utility"] for x in graded[name]["runs"]]
            sd = statistics.stdev(runs) if len(runs) > 1 else float("nan")
            gain = g["utility"] - uni["utility"]
            gains.setdefault(name, {})[r["seed"]] = gain
            ses.setdefault(name, {})[r["seed"]] = sd / len(runs) ** 0.5
            alpha = " / ".join(f"{v:.2f}" for v in s["alpha"].values())
            trained = f"{s['runs']} + {s['long']} long" if s.get("long") else s["runs"]
            print(
                f"| {r['seed']} | {s['strategy']} | {s['budget']} | {s['spent']:.1f} "
                f"| {s['merges']} | {trained} | {alpha} | {g['utility']:.4f} ± {sd:.4f} "
                f"| {gain:+.4f} | {g['utility'] - nat['utility']:+.4f} "
                f"| {uni['mean_loss'] - g['mean_loss']:+.4f} |"
            )
    print("\nmean gain in real utility over uniform across seeds (± sd over seeds):")
    for name, by_seed in sorted(gains.items()):
        values = list(by_seed.values())
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"  {name:18s} {statistics.mean(values):+.4f} ± {sd:.4f}  (n = {len(values)})")
    pairs = (
        ("multifidelity", "merges"),
        ("multifidelity", "real"),
        ("multifidelity3", "multifidelity"),
        ("multifidelity-flat", "merges"),
        ("multifidelity-flat", "real"),
        ("multifidelity-flat", "multifidelity"),
    )
    for budget in sorted({int(n.split("@")[1]) for n in gains}):
        for one, other in pairs:
            x, y = f"{one}@{budget}", f"{other}@{budget}"
            a, b = gains.get(x, {}), gains.get(y, {})
            seeds = sorted(a.keys() & b.keys())  # paired by seed: a search may miss some
            if seeds:
                print(f"  N={budget}: {one} - {other}: {paired(a, b, ses[x], ses[y], seeds)}")
    headroom(gains, ses)


def headroom(gains: dict[str, dict[int, float]], ses: dict[str, dict[int, float]]) -> None:
    """How much any search could have won: per seed the best gain over uniform among every
    graded choice (the largest of noisy means, so it leans high), each search's shortfall from
    it, and the grading noise of one choice for scale."""
    seeds = sorted({s for by_seed in gains.values() for s in by_seed})
    best = {s: max(g[s] for g in gains.values() if s in g) for s in seeds}
    noise = statistics.median(se for by_seed in ses.values() for se in by_seed.values())
    per_seed = ", ".join(f"{s}: {best[s]:+.4f}" for s in seeds)
    print(
        f"\nheadroom: the best graded choice per seed gains {statistics.mean(best.values()):+.4f}"
        f" over uniform on average ({per_seed}); one choice's grading se (median) {noise:.4f}"
    )
    print("shortfall from the seed's best graded choice (mean ± sd over seeds, worst):")
    for name, by_seed in sorted(gains.items()):
        short = [best[s] - g for s, g in by_seed.items()]
        sd = statistics.stdev(short) if len(short) > 1 else float("nan")
        print(f"  {name:18s} {statistics.mean(short):.4f} ± {sd:.4f}, worst {max(short):.4f}")


def paired(
    a: dict[int, float], b: dict[int, float], se_a: dict, se_b: dict, seeds: list[int]
) -> str:
    """Mean ± sd over seeds of a - b, the paired t, how many seeds a was ahead, and each seed's
    difference over the combined standard error of the two choices' grading runs."""
    diff = [a[s] - b[s] for s in seeds]
    mean = statistics.mean(diff)
    sd = statistics.stdev(diff) if len(diff) > 1 else float("nan")
    t = mean / (sd / len(diff) ** 0.5) if len(diff) > 1 and sd > 0 else float("nan")
    per_seed = ", ".join(
        f"{s}: {d:+.4f} ({d / math.hypot(se_a[s], se_b[s]):+.1f} se)"
        for s, d in zip(seeds, diff, strict=True)
    )
    return (
        f"{mean:+.4f} ± {sd:.4f} over {len(diff)} seed(s), paired t {t:+.1f}, ahead on "
        f"{sum(d > 0 for d in diff)}; per seed {per_seed}"
    )


def mean_of(graded: dict) -> dict[str, float]:
    return {k: statistics.mean(x[k] for x in graded["runs"]) for k in ("utility", "mean_loss")}
