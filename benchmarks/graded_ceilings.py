"""Which scoring of the built-in tasks separates real mixed runs: rerun ceilings per metric.

    python benchmarks/graded_ceilings.py --dir /tmp/fid --metric neg_bpb --metric p_gold
    python benchmarks/graded_ceilings.py --dir /tmp/fid --metric neg_bpb --docs 300 --docs 800

Reads the real runs `search_fidelity.py` trained to grade the searches' choices (every mixture
trained on two fresh seeds, in `<dir>/store-<seed>`), scores each again with the built-in tasks
under another metric (the same documents and prompts), and prints, per experiment seed and
metric, the noise ceiling (`ranking.noise_ceiling`: the expected Spearman of two real runs of
the same mixtures, with its 90 % interval) of the utility and of each group. Row `stored`: the
runs' scores under the default evaluation, read from the store (scored once when missing).
`--docs` (repeatable) rescores with that many documents per built-in task (default: the
config's 300), so the same runs show what more documents do to the ceilings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_fidelity import graded_runs  # noqa: E402

from parammix_core import ranking  # noqa: E402
from parammix_core.config import Experiment  # noqa: E402
from parammix_core.data import load_prepared  # noqa: E402
from parammix_core.model import load_model  # noqa: E402
from parammix_core.stages.evaluate import make_evaluator  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402

RunScores = dict[str, dict[int, dict[str, float]]]  # mixture -> grading seed -> metrics


def rescore(folder: Path, seed: int, metric: str, docs: int) -> RunScores:
    """Every graded run scored by `docs` documents of each built-in task under `metric`."""
    exp = Experiment(seed=seed)
    tasks = [t.model_copy(update={"metric": metric}) for t in exp.evaluation.tasks]
    evaluation = exp.evaluation.model_copy(
        update={"tasks": tasks, "heldout_loss": False, "builtin_docs_per_task": docs}
    )
    exp = exp.model_copy(update={"evaluation": evaluation})
    store = Store(str(folder))
    manifest = next(m for m in store.artifacts() if m["stage"] == "data")
    data = ArtifactRef(stage="data", name=manifest["name"], key=manifest["key"])
    prepared = load_prepared(store.local_dir(data))
    out: RunScores = {}
    for mixture, run_seed, ref, _ in graded_runs(folder, seed):
        model = load_model(store.local_dir(ref), exp.model, "cpu")
        evaluator = make_evaluator(exp, store, data, prepared, model, torch.device("cpu"))
        out.setdefault(mixture, {})[run_seed] = evaluator.evaluate()
    return out


def stored(folder: Path, seed: int) -> RunScores:
    out: RunScores = {}
    for mixture, run_seed, _, metrics in graded_runs(folder, seed):
        out.setdefault(mixture, {})[run_seed] = metrics
    return out


def ceilings(runs: RunScores) -> dict[str, dict[str, float]]:
    """Per column (utility, each group): the rerun ceiling over the twice-trained mixtures."""
    pairs = [sorted(seeds.items()) for seeds in runs.values() if len(seeds) == 2]
    groups = sorted(c for c in pairs[0][0][1] if c.startswith("group.") and "stderr" not in c)

    def value(metrics: dict, column: str) -> float:
        if column == "utility":
            return float(np.mean([metrics[g] for g in groups]))
        return metrics[column]

    out = {}
    for column in ["utility", *groups]:
        a = np.array([[value(m, column) for _, m in pair] for pair in pairs])  # (N, 2)
        out[column] = ranking.noise_ceiling(a[:, 0], a[:, 0], a[:, 1])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="search_fidelity.py's folder")
    p.add_argument("--metric", action="append", default=[], help="neg_bpb or p_gold")
    p.add_argument("--docs", type=int, action="append", help="documents per task (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for folder in sorted(args.dir.glob("store-*")):
        seed = int(folder.name.split("-")[1])
        scored = {"stored": stored(folder, seed)}
        for docs in args.docs or [Experiment().evaluation.builtin_docs_per_task]:
            for m in args.metric:
                scored[f"{m} ({docs} docs)"] = rescore(folder, seed, m, docs)
        rows += [(metric, seed, ceilings(runs)) for metric, runs in scored.items()]
    columns = list(rows[0][2])
    print("| metric | seed | mixtures | " + " | ".join(c.removeprefix("group.") for c in columns))
    print("| --- | ---: | ---: |" + " ---: |" * len(columns))
    for metric, seed, c in sorted(rows):
        cells = [
            f"{c[k]['spearman']:.2f} [{c[k]['spearman_low']:.2f}, {c[k]['spearman_high']:.2f}]"
            for k in columns
        ]
        n = int(c[columns[0]]["reruns"])
        print(f"| {metric} | {seed} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
