"""Which design of the knowledge task separates real mixed runs: rerun ceilings per design.

    python benchmarks/knowledge_variants.py --dir /tmp/fid --metric neg_bpb --metric p_gold \
        [--seed S] [--out scores.jsonl]

Reads, per experiment seed (`<dir>/store-<seed>`: `search_fidelity.py`'s stores, each with a
full default run), the real runs its newest validation trained (13 mixtures on one data order,
6 of them again on another) and the runs that graded the searches' choices (8 mixtures, two
data orders each, on the grading seeds 1000 + 10 S and one more). Scores every run on each
design of the knowledge task under each `--metric`, and prints the noise ceiling
(`ranking.noise_ceiling`, 90 % interval) of the knowledge group and of the utility with the
group's score replaced (the other groups' stored scores unchanged, equal weights as in the
default), with the knowledge group's run-to-run noise and spread between mixtures. Row
`stored` is the knowledge score the runs recorded (the design `name`); row `name_neg_bpb`
rescores it and must match `stored`: the check that the rescoring is the product's.

Designs, each from the same stdlib docstring entries (a public function or class whose first
docstring sentence names only it), with the documents drawn from the same seed:
    name      "# <sentence>\n<kind>" -> " <name>"           (pm_stdlib_knowledge before)
    describe  "<kind> <name>:\n    \"\"\"" -> "<sentence>"  (pm_stdlib_knowledge now)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_fidelity import graded_runs, grading_seed, mixture_key  # noqa: E402

from parammix_core import ranking  # noqa: E402
from parammix_core.config import Experiment  # noqa: E402
from parammix_core.config.evaluation import EvalTask  # noqa: E402
from parammix_core.data import load_prepared  # noqa: E402
from parammix_core.data.sources import snapshot  # noqa: E402
from parammix_core.evaluate import Evaluator  # noqa: E402
from parammix_core.evaluate.suite import task_config  # noqa: E402
from parammix_core.evaluate.suite.documents import _knowledge_docs, _shuffled  # noqa: E402
from parammix_core.evaluate.suite.parsing import _Docstring, stdlib_material  # noqa: E402
from parammix_core.model import load_model  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402

Docs = list[dict]


def name_docs(rng: random.Random, n: int, entries: list[_Docstring]) -> Docs:
    """pm_stdlib_knowledge before this benchmark: the name a docstring sentence describes,
    against names of its kind within 2 characters of its length."""
    names = {k: sorted({e.name for e in entries if e.kind == k}) for k in ("def", "class")}
    order = list(entries)
    rng.shuffle(order)
    docs = []
    for e in order:
        pool = [m for m in names[e.kind] if m != e.name and abs(len(m) - len(e.name)) <= 2]
        if len(pool) < 2:
            continue
        doc = _shuffled(rng, f" {e.name}", [f" {m}" for m in rng.sample(pool, 2)], kind=e.kind)
        doc["query"] = f"# {e.sentence}\n{e.kind}"
        docs.append(doc)
        if len(docs) == n:
            break
    return docs


DESIGNS: dict[str, Callable[[random.Random, int, list[_Docstring]], Docs]] = {
    "name": name_docs,
    "describe": _knowledge_docs,
}


def write_tasks(out: Path, n: int, seed: int, metrics: list[str]) -> list[EvalTask]:
    """One lm-eval task per design and metric, group `<design>_<metric>`, in the built-in
    tasks' format (the documents drawn as the built-in suite draws pm_stdlib_knowledge's)."""
    entries = list(stdlib_material(snapshot.stdlib_dir(), identity=snapshot.SHA256).entries)
    tasks = []
    for design, generate in DESIGNS.items():
        docs = generate(random.Random(f"{seed}:pm_stdlib_knowledge"), n, entries)
        for metric in metrics:
            name = f"pmk_{design}_{metric}"
            data = out / f"{name}.jsonl"
            fields = ("query", "choices", "gold", "kind")
            data.write_text("".join(json.dumps({k: d[k] for k in fields}) + "\n" for d in docs))
            (out / f"{name}.yaml").write_text(
                yaml.safe_dump(task_config(name, data), sort_keys=False)
                + "process_results: !function parammix_core.evaluate.suite.score_choices\n"
            )
            tasks.append(EvalTask(name=name, group=f"{design}_{metric}", metric=metric))
    return tasks


def real_runs(store: Store) -> dict[tuple[str, int], ArtifactRef]:
    """Every trained run in the store by (mixture, data-order seed)."""
    out = {}
    for m in store.artifacts():
        if m["stage"] in ("mixed", "final") and m["name"] == "run":
            ref = ArtifactRef(stage=m["stage"], name="run", key=m["key"])
            out[(mixture_key(m["info"]["alpha"]), int(m["info"]["seed"]))] = ref
    return out


def validation_rows(store: Store) -> pd.DataFrame:
    """The newest validation's rows of real runs (first runs and reruns)."""
    refs = [m for m in store.artifacts() if m["stage"] == "validation"]
    newest = max(refs, key=lambda m: m["created"])
    folder = store.local_dir(
        ArtifactRef(stage="validation", name=newest["name"], key=newest["key"])
    )
    rows = pd.read_parquet(folder / "rows.parquet")
    return rows[rows.kind.isin(["mix", "rerun"])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="search_fidelity.py's folder")
    p.add_argument("--seed", type=int, action="append", help="only these stores (repeatable)")
    p.add_argument("--docs", type=int, default=300, help="documents per design")
    p.add_argument("--metric", action="append", help="neg_bpb (default) and/or p_gold")
    p.add_argument("--out", type=Path, help="also write every run's scores here (JSON lines)")
    args = p.parse_args()
    torch.set_num_threads(1)
    metrics = args.metric or ["neg_bpb"]
    columns = [f"{d}_{m}" for d in DESIGNS for m in metrics]
    print("| set | seed | design | noise sd | spread sd | knowledge ceiling | utility ceiling |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for folder in sorted(args.dir.glob("store-*")):
        seed = int(folder.name.split("-")[1])
        if args.seed and seed not in args.seed:
            continue
        store = Store(str(folder))
        exp = Experiment(seed=seed)
        data_m = next(m for m in store.artifacts() if m["stage"] == "data")
        prepared = load_prepared(
            store.local_dir(ArtifactRef(stage="data", name=data_m["name"], key=data_m["key"]))
        )
        runs, sets = real_runs(store), run_sets(folder, seed)
        needed = {r[1] for table in sets.values() for pair in table for r in pair if r is not None}
        with tempfile.TemporaryDirectory() as tmp:
            tasks = write_tasks(Path(tmp), args.docs, seed, metrics)
            scores: dict[tuple[str, int], dict[str, float]] = {}
            for key in sorted(needed):
                ref = runs[key]
                model = load_model(store.local_dir(ref), exp.model, "cpu")
                ev = Evaluator(model, prepared.tokenizer, tasks, tmp, 32, "cpu")
                scores[key] = ev.evaluate()
        if args.out is not None:
            with args.out.open("a") as f:
                for (mixture, run_seed), metrics in scores.items():
                    f.write(
                        json.dumps(
                            {"seed": seed, "mixture": mixture, "run_seed": run_seed, **metrics}
                        )
                        + "\n"
                    )
        for label, table in sets.items():
            report(label, seed, table, scores, columns)


Run = tuple[dict, tuple[str, int]]  # (stored metrics, (mixture, seed))


def run_sets(folder: Path, seed: int) -> dict[str, list[tuple[Run, Run | None]]]:
    """Per set of runs, per mixture: its first run and its rerun (None when trained once).
    The graded runs are the final runs on `search_fidelity.py`'s grading seeds (the store's
    final training of its own choice, on seeds 0 and 1, is left out)."""
    rows = validation_rows(Store(str(folder)))
    alpha_cols = [c for c in rows.columns if c.startswith("alpha.")]

    def run(r: pd.Series) -> Run:
        mixture = mixture_key(r[c] for c in alpha_cols)
        return r.to_dict(), (mixture, int(r["seed"]))

    again = {r["mixture"]: run(r) for _, r in rows[rows.kind == "rerun"].iterrows()}
    validation = [(run(r), again.get(r["mixture"])) for _, r in rows[rows.kind == "mix"].iterrows()]
    graded: dict[str, list[Run]] = {}
    for mixture, run_seed, _, metrics in graded_runs(folder, seed):
        if run_seed < grading_seed(seed, 2):  # the two seeds every graded mixture has
            graded.setdefault(mixture, []).append((metrics, (mixture, run_seed)))
    pairs = [sorted(v, key=lambda x: x[1]) for v in graded.values() if len(v) == 2]
    return {"validation": validation, "graded": [(a, b) for a, b in pairs]}


def report(
    label: str, seed: int, table: list[tuple[Run, Run | None]], scores: dict, columns: list[str]
) -> None:
    """One row per design: the knowledge group's and the utility's noise ceilings."""
    groups = sorted(k for k in table[0][0][0] if k.startswith("group.") and "stderr" not in k)
    others = [g for g in groups if g != "group.knowledge"]
    for design in ("stored", *columns):
        knowledge = {
            key: metrics["group.knowledge"]
            if design == "stored"
            else scores[key][f"group.{design}"]
            for pair in table
            for metrics, key in filter(None, pair)
        }
        utility = {
            key: float(np.mean([*(metrics[g] for g in others), knowledge[key]]))
            for pair in table
            for metrics, key in filter(None, pair)
        }
        k, u = (ceiling(table, values) for values in (knowledge, utility))
        print(
            f"| {label} | {seed} | {design} | {k['noise_sd']:.4f} | {k['spread_sd']:.4f} | "
            f"{k['spearman']:.2f} [{k['spearman_low']:.2f}, {k['spearman_high']:.2f}] | "
            f"{u['spearman']:.2f} [{u['spearman_low']:.2f}, {u['spearman_high']:.2f}] |",
            flush=True,
        )


def ceiling(table: list[tuple[Run, Run | None]], values: dict) -> dict[str, float]:
    """`ranking.noise_ceiling` of `values` (by run key) over the table's mixtures."""
    reran = [(a[1], b[1]) for a, b in table if b is not None]
    return ranking.noise_ceiling(
        np.array([values[a[1]] for a, _ in table]),
        np.array([values[a] for a, _ in reran]),
        np.array([values[b] for _, b in reran]),
    )


if __name__ == "__main__":
    main()
