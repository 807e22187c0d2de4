"""Stage merge_and_evaluate: merges scored in one live model, rows to the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from parammix_core import simplex
from parammix_core.config import EvalTask, Experiment
from parammix_core.data import DataError, PreparedData, load_prepared
from parammix_core.data.fingerprint import fingerprint, folder_fingerprint
from parammix_core.evaluate import BUILTIN_TASKS, Evaluator, SuiteError, write_builtin_suite
from parammix_core.evaluate.task_finder import folder_data_files
from parammix_core.interference import pair_weights
from parammix_core.merge import InMemoryMerger
from parammix_core.merge.replay import mixture_merge_weights
from parammix_core.model import load_model, resolve_device
from parammix_core.search.common import search_bounds
from parammix_core.stages.common import Progress, dump_config, merge_states
from parammix_core.stages.probe_files import load_probe
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json


def evaluation_mixtures(exp: Experiment) -> np.ndarray:
    """The fixed plan (the random strategy's), shape (n_mixtures, K): the initial design, then
    Dirichlet draws inside the per-domain bounds."""
    k = len(exp.domains)
    lo, hi = search_bounds(exp.domains, exp.search.bounds)
    rest = exp.search.n_mixtures - k - 1
    concentration = exp.search.strategies.random.concentration
    draws = simplex.sample_bounded(k, rest, lo, hi, concentration, seed=exp.seed)
    return np.vstack([initial_design(k), draws])


def initial_design(k: int) -> np.ndarray:
    """Vertices (the pure domains: the experts themselves, or with `training.replay` a merge
    just past them) and uniform, (K + 1, K): evaluated whatever the bounds, which constrain
    the proposals and the choice, because they anchor the surrogates and the report."""
    return np.vstack([simplex.vertices(k), simplex.uniform(k)[None]])


def mixture_batches(exp: Experiment) -> list[list[list[float]]]:
    mixtures = evaluation_mixtures(exp)
    size = exp.search.batch_size
    return [mixtures[i : i + size].tolist() for i in range(0, len(mixtures), size)]


def eval_ref(
    exp: Experiment,
    alphas: Sequence[Sequence[float]],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
) -> ArtifactRef:
    spec = {
        "probe": probe.key if exp.evaluation.proxy == "corrected" and probe else None,
        "format": 2,  # rows.parquet + per-document docs.parquet
        "evaluation": evaluation_spec(exp),
        "domains": exp.domains,
        "alphas": [list(map(float, a)) for a in alphas],
        "seed": exp.seed,
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
    }
    return ArtifactRef.for_spec("evals", "batch", spec, code=code_version("evals"))


def evaluation_spec(exp: Experiment) -> dict:
    """What every score depends on beyond the model: the evaluation config, the user's task
    folder and the data files its tasks read, fingerprinted, so editing any of them gives new
    keys to every stage that scores (evaluations, validation, final training, search)."""
    return {
        "config": dump_config(exp.evaluation),
        "tasks_folder": tasks_folder_fingerprint(exp),
        "data_files": task_data_fingerprint(exp),
    }


def more_documents(exp: Experiment) -> str:
    """The advice on evaluation documents that applies to the configured tasks."""
    if any(t.name in BUILTIN_TASKS for t in exp.evaluation.tasks):
        docs = exp.evaluation.builtin_docs_per_task
        return f"more evaluation documents (evaluation.builtin_docs_per_task, {docs} now)"
    return "more evaluation documents (larger task sets)"


def tasks_folder_fingerprint(exp: Experiment) -> list | None:
    """The files of the user's lm-eval task folder (YAMLs, their data), hashed: editing a task
    gives new evaluation keys."""
    folder = exp.evaluation.include_path
    return None if folder is None else folder_fingerprint(folder, exp.store.storage_options)


def task_data_fingerprint(exp: Experiment) -> list:
    """[path, size, stamp] of every file a task reads: `evaluation.tasks[].data_files` and the
    `data_files` the task folder's YAMLs name (often outside it). A missing file is marked
    here and named when its task loads."""
    evaluation = exp.evaluation
    paths = [p for t in evaluation.tasks for p in (t.data_files or {}).values()]
    if evaluation.include_path is not None:
        paths += folder_data_files(evaluation.include_path)
    out: list = []
    for path in sorted(set(paths)):
        try:
            out += fingerprint([path], exp.store.storage_options, exp.data.fingerprint)
        except DataError:
            out.append([path, None, "missing"])
    return out


@dataclass
class _Bench:
    """A live model with its merger and evaluator, reused by later batches on the same thread."""

    merger: InMemoryMerger
    evaluator: Evaluator
    replay: float = 0.0  # the experts' (training.replay)
    step_scale: float | None = None  # set when the merge is curvature-corrected

    def set_mixture(self, alpha: np.ndarray) -> None:
        """The merge that stands for the data mixture alpha (`merge.replay`), plus
        Delta(alpha) = scale * sum_kj c_kj v_kj for the corrected proxy (`pair_weights`)."""
        self.merger.apply(mixture_merge_weights(alpha, self.merger.names, self.replay))
        if self.step_scale is not None:
            self.merger.correct(self.step_scale * pair_weights(alpha, self.replay))


_benches = threading.local()


def _bench(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None,
) -> _Bench:
    corrected = exp.evaluation.proxy == "corrected"
    if corrected and probe is None:
        raise ValueError("evaluation.proxy 'corrected' needs the interference probe's output")
    ident = canonical_json(
        [
            evaluation_spec(exp),
            exp.seed,
            data.key,
            base.key,
            [e.key for e in experts],
            probe.key if corrected else None,
        ]
    )
    cached = getattr(_benches, "value", None)
    if cached is not None and cached[0] == ident:
        return cached[1]
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base)), exp.model, device)
    base_state, expert_states = merge_states(exp, store, base, experts, device)
    merger = InMemoryMerger(model, base_state, expert_states, names=exp.domains)
    del base_state, expert_states
    evaluator = make_evaluator(exp, store, data, prepared, model, device)
    bench = _Bench(merger, evaluator, exp.training.replay)
    if corrected:
        shards, _, info = load_probe(store, probe)
        merger.set_correction(shards.correction(next(model.parameters()).dtype, device))
        bench.step_scale = info["step_scale"]
    _benches.value = (ident, bench)
    return bench


def make_evaluator(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    prepared: PreparedData,
    model: torch.nn.Module,
    device: torch.device,
) -> Evaluator:
    """The configured benchmarks and held-out loss around `model`: how every model is scored
    (merges, real mixed runs, final runs), so their figures are comparable."""
    return Evaluator(
        model,
        prepared.tokenizer,
        exp.evaluation.tasks,
        _include_paths(exp, store, data, prepared.heldout_texts),
        exp.evaluation.batch_size,
        device,
        exp.evaluation.num_fewshot,
        heldout=prepared.heldout if exp.evaluation.heldout_loss else None,
        allow_code_execution=exp.evaluation.allow_code_execution,
    )


_suite_lock = threading.Lock()


def _include_paths(
    exp: Experiment, store: Store, data: ArtifactRef, heldout_texts: dict[str, list[str]]
) -> str | None:
    """The task folder for lm-eval: the user's when set, else the built-in suite when a
    built-in task is named; names not found there are looked up in lm-eval's own tasks."""
    if exp.evaluation.include_path is not None:
        return exp.evaluation.include_path
    if _uses_builtin_suite(exp):
        return _builtin_suite(exp, store, data, heldout_texts)
    return None


def _uses_builtin_suite(exp: Experiment) -> bool:
    """A built-in task is configured and no user folder replaces the suite."""
    evaluation = exp.evaluation
    return evaluation.include_path is None and any(
        t.name in BUILTIN_TASKS for t in evaluation.tasks
    )


def _builtin_suite(
    exp: Experiment, store: Store, data: ArtifactRef, heldout_texts: dict[str, list[str]]
) -> str:
    """The built-in suite, generated once per machine from the held-out texts."""
    task_docs = _task_docs(exp)
    target = store.cache_dir / "suites" / suite_ref(exp, data).key[:24]
    with _suite_lock:
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            try:
                write_builtin_suite(
                    target,
                    exp.evaluation.builtin_docs_per_task,
                    exp.seed,
                    heldout_texts,
                    task_docs=task_docs,
                )
            except SuiteError as err:
                raise SuiteError(f"{_count_field(exp, str(err))}: {err}") from None
            (target / ".complete").write_text("ok")
    return str(target)


def _task_docs(exp: Experiment) -> dict[str, int]:
    return {t.name: t.docs for t in exp.evaluation.tasks if t.docs is not None}


def suite_ref(exp: Experiment, data: ArtifactRef) -> ArtifactRef:
    """The built-in suite's address: what its documents are drawn from and how many."""
    spec: dict = {"docs": exp.evaluation.builtin_docs_per_task, "seed": exp.seed, "data": data.key}
    task_docs = _task_docs(exp)
    if task_docs:
        spec["task_docs"] = task_docs
    return ArtifactRef.for_spec("suite", "builtin", spec, code=code_version("evals"))


def _count_field(exp: Experiment, message: str) -> str:
    """The config field that set the count a built-in task could not reach (its message
    starts with the task's name): its own `docs`, else `builtin_docs_per_task`."""
    for i, task in enumerate(exp.evaluation.tasks):
        if task.docs is not None and message.startswith(f"{task.name}:"):
            return f"evaluation.tasks.{i}.docs"
    return "evaluation.builtin_docs_per_task"


def builtin_suite(exp: Experiment, store: Store, data: ArtifactRef) -> str | None:
    """The built-in suite's folder when a built-in task is configured, written now: a count
    its sources cannot reach fails right after the data stage, not after training."""
    if not _uses_builtin_suite(exp):
        return None
    return _builtin_suite(exp, store, data, load_prepared(store.local_dir(data)).heldout_texts)


def merge_and_evaluate(
    exp: Experiment,
    store: Store,
    alphas: Sequence[Sequence[float]],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Merge each mixture into one live model in place and evaluate it; rows to the store.

    Each row records its cost: the wall seconds of its merge and evaluation (`seconds`) and
    the device they ran on (`device`).
    """
    ref = eval_ref(exp, alphas, data, base, experts, probe)
    if store.exists(ref):
        return ref
    mixtures = [simplex.validate(a, exp.domains) for a in alphas]
    bench = _bench(exp, store, data, base, experts, probe)
    rows, docs = [], []
    device = str(bench.evaluator.device)
    for i, alpha in enumerate(mixtures):
        start = time.perf_counter()
        bench.set_mixture(alpha)
        metrics, per_doc = bench.evaluator.evaluate_docs()
        row = {f"alpha.{d}": float(w) for d, w in zip(exp.domains, alpha, strict=True)}
        # the measured cost of this evaluation (merge + scoring), which cost-aware search reads
        rows.append({**row, **metrics, "seconds": time.perf_counter() - start, "device": device})
        docs.append(doc_columns(per_doc))
        if progress is not None:
            progress(i + 1, len(mixtures), f"mixture {i + 1}/{len(mixtures)}")
    out = store.staging(ref)
    pd.DataFrame(rows).to_parquet(out / "rows.parquet", index=False)
    pd.DataFrame(docs).astype("float32").to_parquet(out / "docs.parquet", index=False)
    return store.publish(ref, out, info={"mixtures": len(rows)})


def load_rows(store: Store, evals: Sequence[ArtifactRef]) -> pd.DataFrame:
    return pd.concat([store.load_parquet(r, "rows.parquet") for r in evals], ignore_index=True)


def load_doc_scores(store: Store, evals: Sequence[ArtifactRef], tasks: Sequence[EvalTask]):
    """Per-document scores of every evaluated mixture: task -> (N, D_task)."""
    docs = pd.concat([store.load_parquet(r, "docs.parquet") for r in evals], ignore_index=True)
    scores = {task.name: doc_matrix(docs, task.name) for task in tasks}
    return {name: m for name, m in scores.items() if m is not None}


def doc_columns(per_doc: Mapping[str, np.ndarray]) -> dict[str, float]:
    """One row of a per-document table: `<task>.<doc id>` -> score."""
    return {f"{t}.{j}": float(v) for t, values in per_doc.items() for j, v in enumerate(values)}


def doc_matrix(docs: pd.DataFrame, task: str) -> np.ndarray | None:
    """A task's per-document scores (rows, D) from a per-document table, in doc-id order;
    None when the table has none of the task's."""
    cols = [c for c in docs.columns if c.rsplit(".", 1)[0] == task]
    if not cols:
        return None
    cols.sort(key=lambda c: int(c.rsplit(".", 1)[1]))
    return docs[cols].to_numpy(dtype=float)
