"""The pipeline's stages as plain functions: store in, library call, store out.

Each stage has a `*_ref` function (the content address of its output, computed from the config
slice that matters and the upstream refs, without running anything) and a run function that
returns that ref, computing and publishing the artifact only when the store does not have it
yet. Prefect tasks (`tasks/`) wrap these one to one and use the same ref as cache key, so a
rerun skips finished work with or without Prefect's database.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from parammix_core import simplex
from parammix_core.config import EvalTask, Experiment
from parammix_core.data import load_prepared, natural_weights, prepare_corpora
from parammix_core.evaluate import BUILTIN_TASKS, Evaluator, write_builtin_suite
from parammix_core.interference import (
    ProbeResult,
    per_layer_cosines,
    predicted_delta_norms,
    probe,
    step_scale,
    task_vector_cosines,
)
from parammix_core.merge import InMemoryMerger
from parammix_core.model import build_model, load_model, parameter_count, resolve_device, save_model
from parammix_core.noise import group_noise
from parammix_core.plots import plot_discrepancy, plot_interference
from parammix_core.report import markdown_table, write_report
from parammix_core.search import Choice, choose_mixture
from parammix_core.store import ArtifactRef, Store, canonical_json
from parammix_core.surrogate import SurrogateSet, fit_surrogates
from parammix_core.train import sample_batch, train

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): how far a long stage has got."""


def open_store(exp: Experiment) -> Store:
    return Store(exp.store.url, exp.store.storage_options, exp.store.verify)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


# --- prepare_domains ------------------------------------------------------------------------


def data_ref(exp: Experiment) -> ArtifactRef:
    # The built-in code and web domains read this machine's Python sources and docs.
    spec = {
        "data": _dump(exp.data),
        "seed": exp.seed,
        "tokenizer": tokenizer_source(exp),
        "python": platform.python_version(),
    }
    return ArtifactRef.for_spec("data", "domains", spec)


def tokenizer_source(exp: Experiment) -> str | None:
    """A user base checkpoint brings its own tokenizer unless one is named."""
    return exp.data.tokenizer or exp.model.checkpoint


def prepare_domains(exp: Experiment, store: Store, progress: Progress | None = None) -> ArtifactRef:
    ref = data_ref(exp)
    if store.exists(ref):
        return ref
    out = store.staging(ref)
    cfg = exp.data.model_copy(update={"tokenizer": tokenizer_source(exp)})
    log = (lambda msg: progress(0, 1, msg)) if progress else None
    stats = prepare_corpora(cfg, exp.seed, out, progress=log)
    return store.publish(ref, out, info={"domains": exp.domains, "stats": stats})


# --- base model -----------------------------------------------------------------------------


def base_ref(exp: Experiment, data: ArtifactRef) -> ArtifactRef:
    if exp.model.checkpoint is not None:
        spec = {"checkpoint": exp.model.checkpoint, "fingerprint": _fingerprint(exp)}
    else:
        spec = {
            "model": _dump(exp.model),
            "train": _dump(exp.training.base),
            "seed": exp.seed,
            "init": 2,  # the end-of-text embedding row trains (no padding_idx)
        }
    return ArtifactRef.for_spec("base", "base", {**spec, "data": data.key})


def _fingerprint(exp: Experiment) -> list[list[Any]]:
    """Names, sizes and modification stamps of the checkpoint's files: cheap change detection."""
    fs, root = fsspec.core.url_to_fs(exp.model.checkpoint, **exp.store.storage_options)
    if not fs.isdir(root):
        raise FileNotFoundError(f"model.checkpoint: no such checkpoint directory {root!r}")
    out = []
    for info in sorted(fs.ls(root, detail=True), key=lambda i: i["name"]):
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        out.append([info["name"].rsplit("/", 1)[-1], info.get("size"), str(stamp)])
    return out


def build_base(
    exp: Experiment, store: Store, data: ArtifactRef, progress: Progress | None = None
) -> ArtifactRef:
    ref = base_ref(exp, data)
    if store.exists(ref):
        return ref
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    out = store.staging(ref)
    if exp.model.checkpoint is not None:
        model = load_model(_local_checkpoint(exp, store), exp.model, device)
        info: dict[str, Any] = {"source": exp.model.checkpoint}
    else:
        tok = prepared.tokenizer
        model = build_model(
            exp.model,
            len(tok),
            exp.data.block_size,
            exp.seed,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model.to(device)
        weights = simplex.uniform(len(prepared.train))
        result = train(
            model,
            prepared.train,
            weights,
            exp.training.base,
            exp.seed,
            store.work_dir(ref),
            device,
            _train_progress(progress, "base"),
        )
        info = {"final_loss": result.final_loss, "steps": result.steps, "seconds": result.seconds}
    info["parameters"] = parameter_count(model)
    save_model(model, out)
    return store.publish(ref, out, info=info)


def _local_checkpoint(exp: Experiment, store: Store) -> str:
    path = exp.model.checkpoint
    assert path is not None
    if "://" not in path:
        return path
    fs, root = fsspec.core.url_to_fs(path, **exp.store.storage_options)
    target = store.cache_dir / "checkpoints" / ArtifactRef.for_spec("ckpt", "c", {"p": path}).key
    if not (target / "config.json").exists():
        fs.get(root.rstrip("/") + "/", str(target), recursive=True)
    return str(target)


def _train_progress(progress: Progress | None, what: str) -> Callable[[int, int, float], None]:
    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step, total, f"{what}: step {step}/{total} loss {loss:.4f}")

    return report


# --- train_expert ---------------------------------------------------------------------------


def expert_ref(exp: Experiment, domain: str, data: ArtifactRef, base: ArtifactRef) -> ArtifactRef:
    spec = {
        "domain": domain,
        "train": _dump(exp.training.expert),
        "seed": exp.seed,
        "attn": exp.model.attn_implementation,
        "dtype": exp.model.dtype,
        "data": data.key,
        "base": base.key,
    }
    return ArtifactRef.for_spec("expert", domain, spec)


def train_expert(
    exp: Experiment,
    store: Store,
    domain: str,
    data: ArtifactRef,
    base: ArtifactRef,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Train one domain expert from the shared base (one-hot mixture, expert hyper-parameters)."""
    if domain not in exp.domains:
        raise ValueError(f"unknown domain {domain!r}; domains are {exp.domains}")
    ref = expert_ref(exp, domain, data, base)
    if store.exists(ref):
        return ref
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base)), exp.model, device)
    weights = [1.0 if d == domain else 0.0 for d in prepared.train]
    result = train(
        model,
        prepared.train,
        weights,
        exp.training.expert,
        exp.seed,
        store.work_dir(ref),
        device,
        _train_progress(progress, domain),
    )
    out = store.staging(ref)
    save_model(model, out)
    info = {"domain": domain, "final_loss": result.final_loss, "seconds": result.seconds}
    return store.publish(ref, out, info=info)


# --- merge_and_evaluate ---------------------------------------------------------------------


def evaluation_mixtures(exp: Experiment) -> np.ndarray:
    """The merges to evaluate, shape (n_mixtures, K): vertices, uniform, then Dirichlet draws."""
    k = len(exp.domains)
    rest = exp.search.n_mixtures - k - 1
    draws = simplex.dirichlet(k, rest, exp.search.dirichlet_concentration, seed=exp.seed)
    return np.vstack([simplex.vertices(k), simplex.uniform(k)[None], draws])


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
        "evaluation": _dump(exp.evaluation),
        "domains": exp.domains,
        "alphas": [list(map(float, a)) for a in alphas],
        "seed": exp.seed,
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
    }
    return ArtifactRef.for_spec("evals", "batch", spec)


@dataclass
class _Bench:
    """A live model with its merger and evaluator, reused by later batches on the same thread."""

    merger: InMemoryMerger
    evaluator: Evaluator
    step_scale: float | None = None  # set when the merge is curvature-corrected

    def set_mixture(self, alpha: np.ndarray) -> None:
        """theta(alpha), plus Delta(alpha) = scale * sum_kj a_k a_j v_kj for the corrected proxy."""
        self.merger.apply(alpha)
        if self.step_scale is not None:
            self.merger.correct(self.step_scale * np.outer(alpha, alpha).reshape(-1))


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
            _dump(exp.evaluation),
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
    base_state = store.load_tensors(base, "model.safetensors", str(device))
    expert_states = [store.load_tensors(e, "model.safetensors", str(device)) for e in experts]
    merger = InMemoryMerger(model, base_state, expert_states, names=exp.domains)
    del base_state, expert_states
    evaluator = Evaluator(
        model,
        prepared.tokenizer,
        exp.evaluation.tasks,
        _include_paths(exp, store, data, prepared.heldout_texts),
        exp.evaluation.batch_size,
        device,
        exp.evaluation.num_fewshot,
        heldout=prepared.heldout if exp.evaluation.heldout_loss else None,
    )
    bench = _Bench(merger, evaluator)
    if corrected:
        result, info = load_probe(store, probe)
        k = len(exp.domains)
        merger.set_correction(result.v().reshape(k * k, -1))
        bench.step_scale = info["step_scale"]
    _benches.value = (ident, bench)
    return bench


_suite_lock = threading.Lock()


def _include_paths(
    exp: Experiment, store: Store, data: ArtifactRef, heldout_texts: dict[str, list[str]]
) -> str | None:
    """The task folder for lm-eval: the user's when set, else the built-in suite when a
    built-in task is named; names not found there are looked up in lm-eval's own tasks."""
    if exp.evaluation.include_path is not None:
        return exp.evaluation.include_path
    if any(t.name in BUILTIN_TASKS for t in exp.evaluation.tasks):
        return _builtin_suite(exp, store, data, heldout_texts)
    return None


def _builtin_suite(
    exp: Experiment, store: Store, data: ArtifactRef, heldout_texts: dict[str, list[str]]
) -> str:
    """The built-in suite, generated once per machine from the held-out texts."""
    spec = {"docs": exp.evaluation.builtin_docs_per_task, "seed": exp.seed, "data": data.key}
    key = ArtifactRef.for_spec("suite", "builtin", spec).key
    target = store.cache_dir / "suites" / key[:24]
    with _suite_lock:
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            write_builtin_suite(
                target, exp.evaluation.builtin_docs_per_task, exp.seed, heldout_texts
            )
            (target / ".complete").write_text("ok")
    return str(target)


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
    """Merge each mixture into one live model in place and evaluate it; rows to the store."""
    ref = eval_ref(exp, alphas, data, base, experts, probe)
    if store.exists(ref):
        return ref
    mixtures = [simplex.validate(a, exp.domains) for a in alphas]
    bench = _bench(exp, store, data, base, experts, probe)
    rows, docs = [], []
    for i, alpha in enumerate(mixtures):
        start = time.perf_counter()
        bench.set_mixture(alpha)
        metrics, per_doc = bench.evaluator.evaluate_docs()
        row = {f"alpha.{d}": float(w) for d, w in zip(exp.domains, alpha, strict=True)}
        rows.append({**row, **metrics, "seconds": time.perf_counter() - start})
        docs.append({f"{t}.{j}": v for t, values in per_doc.items() for j, v in enumerate(values)})
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
    out = {}
    for task in tasks:
        cols = [c for c in docs.columns if c.rsplit(".", 1)[0] == task.name]
        if cols:
            cols.sort(key=lambda c: int(c.rsplit(".", 1)[1]))
            out[task.name] = docs[cols].to_numpy(dtype=float)
    return out


# --- interference_probe --------------------------------------------------------------------


def probe_ref(
    exp: Experiment, data: ArtifactRef, base: ArtifactRef, experts: Sequence[ArtifactRef]
) -> ArtifactRef:
    spec = {
        "probe": _dump(exp.probe),
        "seed": exp.seed,
        "expert_train": _dump(exp.training.expert),
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
    }
    return ArtifactRef.for_spec("probe", "interference", spec)


def interference_probe(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    progress: Progress | None = None,
) -> ArtifactRef:
    """g_k and H_k g_j at the base, task-vector cosines, and the heat maps of both."""
    ref = probe_ref(exp, data, base, experts)
    if store.exists(ref):
        return ref
    start = time.perf_counter()
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base)), exp.model, device)
    gen = torch.Generator().manual_seed(exp.seed)
    one = torch.ones(1)
    batches = {
        d: [
            sample_batch([prepared.train[d]], one, exp.probe.batch_size, gen).long().to(device)
            for _ in range(exp.probe.batches_per_domain)
        ]
        for d in exp.domains
    }
    result = probe(model, batches, exp.probe.method, exp.probe.chunk_size, progress)
    base_state = store.load_tensors(base, "model.safetensors")
    expert_states = [store.load_tensors(e, "model.safetensors") for e in experts]
    cosines = task_vector_cosines(base_state, expert_states)
    per_layer = per_layer_cosines(base_state, expert_states)
    curvature = result.relative_curvature()
    info = {
        "domains": exp.domains,
        "method": result.method,
        "step_scale": step_scale(exp.training.expert.lr, exp.training.expert.steps),
        "relative_curvature": np.asarray(curvature).tolist(),
        "task_vector_cosines": np.asarray(cosines).tolist(),
        "per_layer_cosines": {k: np.asarray(v).tolist() for k, v in per_layer.items()},
        "seconds": time.perf_counter() - start,
    }
    out = store.staging(ref)
    save_file(
        {k: v.contiguous() for k, v in result.to_tensors().items()}, out / "probe.safetensors"
    )
    (out / "probe.json").write_text(canonical_json(info))
    plot_interference(
        exp.domains, np.asarray(curvature), np.asarray(cosines), out / "interference.png"
    )
    return store.publish(ref, out, info={"method": result.method, "seconds": info["seconds"]})


def load_probe(store: Store, ref: ArtifactRef) -> tuple[ProbeResult, dict[str, Any]]:
    info = store.load_json(ref, "probe.json")
    return ProbeResult.from_tensors(
        info["domains"], store.load_tensors(ref, "probe.safetensors")
    ), info


# --- fit_surrogates -------------------------------------------------------------------------


def surrogate_ref(
    exp: Experiment, evals: Sequence[ArtifactRef], probe: ArtifactRef | None = None
) -> ArtifactRef:
    spec = {
        "evals": [e.key for e in evals],
        "folds": exp.search.cv_folds,
        "seed": exp.seed,
        "probe": probe.key if probe is not None else None,
    }
    return ArtifactRef.for_spec("surrogates", "lightgbm", spec)


def surrogate_targets(rows: pd.DataFrame) -> list[str]:
    """Every measured metric: tasks, groups and per-domain losses (not their stderr)."""
    return [
        c
        for c in rows.columns
        if c.split(".")[0] in ("task", "group", "loss") and not c.endswith(".stderr")
    ]


def fit(
    exp: Experiment,
    store: Store,
    evals: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
) -> ArtifactRef:
    """Surrogates per metric; the rows gain the probe's predicted ||Delta(alpha)|| if probed."""
    ref = surrogate_ref(exp, evals, probe)
    if store.exists(ref):
        return ref
    rows = load_rows(store, evals)
    x = rows[[f"alpha.{d}" for d in exp.domains]].to_numpy()
    targets = {t: rows[t].to_numpy() for t in surrogate_targets(rows)}
    surrogates = fit_surrogates(x, targets, exp.search.cv_folds, exp.seed)
    tasks = exp.evaluation.tasks
    noise = group_noise(x, load_doc_scores(store, evals, tasks), tasks)
    out = store.staging(ref)
    (out / "surrogates.json").write_text(canonical_json(surrogates.to_json()))
    (out / "cv.json").write_text(canonical_json(surrogates.cv))
    (out / "noise.json").write_text(canonical_json(noise))
    if probe is not None:
        result, info = load_probe(store, probe)
        rows["predicted_delta_norm"] = predicted_delta_norms(x, result.gram(), info["step_scale"])
    rows.to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out, info={"rows": len(rows), "cv": surrogates.cv})


def load_surrogates(store: Store, ref: ArtifactRef) -> SurrogateSet:
    return SurrogateSet.from_json(store.load_json(ref, "surrogates.json"))


# --- optimise_mixture -----------------------------------------------------------------------


def choice_ref(exp: Experiment, surrogates: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    spec = {
        "search": _dump(exp.search),
        "groups": exp.evaluation.groups,
        "seed": exp.seed,
        "surrogates": surrogates.key,
        "data": data.key,
    }
    return ArtifactRef.for_spec("choice", "mixture", spec)


def optimise(
    exp: Experiment, store: Store, surrogates: ArtifactRef, data: ArtifactRef
) -> ArtifactRef:
    ref = choice_ref(exp, surrogates, data)
    if store.exists(ref):
        return ref
    stats = store.load_json(data, "stats.json")
    choice = choose_mixture(
        load_surrogates(store, surrogates),
        exp.domains,
        exp.evaluation.groups,
        exp.search,
        exp.seed,
        natural=natural_weights(stats),
    )
    out = store.staging(ref)
    (out / "choice.json").write_text(canonical_json(choice.to_json()))
    return store.publish(ref, out, info={"alpha": choice.alpha})


def load_choice(store: Store, ref: ArtifactRef) -> Choice:
    return Choice.from_json(store.load_json(ref, "choice.json"))


# --- report ---------------------------------------------------------------------------------


def report_ref(
    exp: Experiment, surrogates: ArtifactRef, choice: ArtifactRef, probe: ArtifactRef | None = None
) -> ArtifactRef:
    spec = {
        "name": exp.name,
        "surrogates": surrogates.key,
        "choice": choice.key,
        "probe": probe.key if probe is not None else None,
    }
    return ArtifactRef.for_spec("report", "report", spec)


def report(
    exp: Experiment,
    store: Store,
    surrogates: ArtifactRef,
    choice: ArtifactRef,
    probe: ArtifactRef | None = None,
) -> ArtifactRef:
    ref = report_ref(exp, surrogates, choice, probe)
    if store.exists(ref):
        return ref
    out = store.staging(ref)
    rows = store.load_parquet(surrogates, "rows.parquet")
    extra = {"Evaluation noise": noise_section(store.load_json(surrogates, "noise.json"))}
    if probe is not None:
        extra["Interference probe"] = probe_section(store, probe, rows, exp.domains, out)
    write_report(
        out,
        exp.name,
        exp.domains,
        exp.evaluation.groups,
        rows.drop(columns=["predicted_delta_norm"], errors="ignore"),
        load_surrogates(store, surrogates),
        load_choice(store, choice),
        extra=extra,
    )
    return store.publish(ref, out, info={"name": exp.name})


def noise_section(noise: dict[str, dict[str, float]]) -> str:
    """Markdown: is the spread of each group over the mixtures above the paired noise?"""
    table = pd.DataFrame(
        [
            {
                "group": g,
                "sd over mixtures": f"{n['spread_sd']:.4f}",
                "paired stderr vs uniform (median)": f"{n['paired_stderr']:.4f}",
                "sd / paired stderr": f"{n['spread_sd'] / n['paired_stderr']:.1f}",
                "split-half reliability": f"{n['split_half']:.3f}",
            }
            for g, n in noise.items()
        ]
    )
    return (
        "Every mixture is scored on the same documents, so differences between mixtures are "
        "paired. The table compares the spread of each capability group over the evaluated "
        "mixtures with the paired standard error of a mixture's difference to the uniform "
        "mixture, and gives the split-half reliability of the group score across mixtures "
        "(even vs odd documents, Spearman-Brown corrected): near 1, the ranking of mixtures "
        "would survive a fresh draw of documents.\n\n" + markdown_table(table)
    )


def probe_section(
    store: Store, probe: ArtifactRef, rows: pd.DataFrame, domains: list[str], out: Path
) -> str:
    """Markdown and figures for the probe: curvature, cosines, where the proxy should break."""
    info = store.load_json(probe, "probe.json")
    (out / "interference.png").write_bytes(
        (store.local_dir(probe) / "interference.png").read_bytes()
    )
    plot_discrepancy(rows, domains, "predicted_delta_norm", out / "discrepancy.png")
    curvature = pd.DataFrame(info["relative_curvature"], columns=domains)
    curvature.insert(0, "H of \\ g of", domains)
    cosines = pd.DataFrame(info["task_vector_cosines"], columns=domains)
    cosines.insert(0, "task vector", domains)
    worst = rows.nlargest(5, "predicted_delta_norm").copy()
    worst["predicted_delta_norm"] = worst["predicted_delta_norm"].map("{:.3g}".format)
    shown = [f"alpha.{d}" for d in domains] + ["predicted_delta_norm"]
    return "\n\n".join(
        [
            f"Hessian-vector products at the base ({info['method']}, "
            f"{info['seconds']:.1f} s). Relative effective curvature ||H_k g_j|| / ||H_k g_k|| "
            "(row k: the Hessian of domain k; column j: the gradient of domain j): off-diagonal "
            "entries well below 1 mean cross-domain interference is small against each "
            "domain's own dynamics, the regime where a merge stands in for mixed training.",
            markdown_table(curvature),
            "Cosine similarity of the experts' task vectors (near 0: near-orthogonal updates).",
            markdown_table(cosines),
            "![interference](interference.png)",
            "Predicted distance between the merge and a model trained on the mixture, "
            f"||Delta(alpha)|| = eta^2 T(T-1)/2 ||sum_kj a_k a_j (H_k g_j - H_k g_k)|| with "
            f"eta^2 T(T-1)/2 = {info['step_scale']:.4g} (the experts' learning rate and steps). "
            "Mixtures where the proxy is expected to be least faithful:",
            markdown_table(worst[shown]),
            "![predicted discrepancy](discrepancy.png)",
        ]
    )


def report_path(store: Store, ref: ArtifactRef) -> str:
    return store.uri(ref, "report.md")


def report_text(store: Store, ref: ArtifactRef) -> str:
    """The report's markdown (read as text; nothing is deserialised)."""
    store.check(ref, verify="size")
    return store.fs.cat_file(f"{store.root}/{ref.path}/report.md").decode()
