"""The searches' choices graded again with the knowledge task's new design (issue 19).

    python benchmarks/knowledge_variants.py --dir /tmp/fid --seed S --out scores-S.jsonl
    python benchmarks/searches_rescored.py --dir /tmp/fid --seed S --scores scores-S.jsonl

`search_fidelity.py` trained each search's choice (and uniform) twice on the grading seeds
1000 + 10 S and 1001 + 10 S and scored the runs with the knowledge task of its day. This prints,
per search and budget, the real utility of its choice (mean of the two runs, equal group
weights as in the default) with the knowledge group as stored (`old`) and as rescored by
`knowledge_variants.py`'s `describe` design under neg_bpb, the task the default uses now
(`new`), with the new one's standard error over the two runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_fidelity import graded_runs, grading_seed, mixture_key  # noqa: E402

from parammix_core.config import Experiment  # noqa: E402

OTHER_GROUPS = ("code", "language", "math", "reasoning")


def runs_by_mixture(folder: Path, seed: int) -> dict[str, list[tuple[int, dict]]]:
    """mixture -> [(grading seed, stored metrics)] of the runs on the two grading seeds."""
    out: dict[str, list[tuple[int, dict]]] = {}
    for mixture, run_seed, _, metrics in graded_runs(folder, seed):
        if run_seed < grading_seed(seed, 2):
            out.setdefault(mixture, []).append((run_seed, metrics))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="search_fidelity.py's folder")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--scores", type=Path, required=True, help="knowledge_variants.py --out")
    args = p.parse_args()
    domains = Experiment().domains
    new = {}
    for line in args.scores.read_text().splitlines():
        r = json.loads(line)
        new[(r["mixture"], r["run_seed"])] = r["group.describe_neg_bpb"]
    runs = runs_by_mixture(args.dir / f"store-{args.seed}", args.seed)

    def utility(mixture: str, rescored: bool) -> np.ndarray:
        return np.array(
            [
                np.mean(
                    [m[f"group.{g}"] for g in OTHER_GROUPS]
                    + [new[(mixture, s)] if rescored else m["group.knowledge"]]
                )
                for s, m in runs[mixture]
            ]
        )

    searches = [json.loads(x) for x in (args.dir / f"searches-{args.seed}.jsonl").open()]
    rows = [(f"{s['strategy']} N={s['budget']}", s["alpha"]) for s in searches]
    rows.append(("uniform", dict.fromkeys(domains, 1 / len(domains))))
    print("| seed | search | old utility | new utility | new se |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for label, alpha in rows:
        mixture = mixture_key(alpha[d] for d in domains)
        old, now = utility(mixture, False), utility(mixture, True)
        se = now.std(ddof=1) / np.sqrt(len(now))
        print(f"| {args.seed} | {label} | {old.mean():+.4f} | {now.mean():+.4f} | {se:.4f} |")


if __name__ == "__main__":
    main()
