"""Stage validate_proxy: do merge scores rank mixtures as real mixed training does?

For M non-vertex mixtures (uniform, Dirichlet draws, the chosen one) a model is really trained
from the base on batches drawn by alpha, with the experts' steps, batch and hyper-parameters
(`stages.mixed`, one mapped task each); a few are trained again with another data order to
measure the run-to-run noise. `validate_proxy` scores the merges and the trained models with
the same evaluator; how their rankings compare (`parammix_core.proxy_validation`) is computed
from those scores when they are read (`stages.validation_table`), so a change to that analysis
never scores a run again.

When the interference probe ran, the stage also measures what the second-order analysis
predicts: the merge-vs-mix parameter gap theta_mix - theta_merge(alpha) of every run against the
predicted direction d(alpha) = sum_kj a_k a_j v_kj. One effective step scale s is fitted by least
squares, s = sum <gap, d> / sum <d, d> (for Adam, sum_{s<t} eta_s eta_t of plain gradient
descent is only an order of magnitude), and the merges corrected by s d(alpha) are scored too,
each with s fitted on the *other* mixtures (leave-one-out), so the corrected proxy is never
fitted on the mixture it ranks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from parammix_core import ranking, simplex
from parammix_core.config import Experiment
from parammix_core.data import load_prepared
from parammix_core.evaluate.heldout import block_losses
from parammix_core.hvp import flat_params
from parammix_core.interference import predicted_delta_norms
from parammix_core.merge import InMemoryMerger
from parammix_core.merge.replay import expert_mixtures, mixture_merge_weights
from parammix_core.model import load_model, load_state, resolve_device
from parammix_core.plots import plot_validation
from parammix_core.stages.common import (
    Progress,
    dump_config,
    merge_states,
)
from parammix_core.stages.evaluate import _bench, doc_columns, evaluation_spec
from parammix_core.stages.finite import finite_json
from parammix_core.stages.mixed import validation_train
from parammix_core.stages.probe_files import load_probe
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json

DRAW_SEED = 7919  # validation draws are independent of the search's evaluated mixtures
RUN_DOCS = "run_docs.parquet"  # per-document scores of the real runs (kind, mixture, task.doc)
RERUN_SEED = 1_000_003  # seed offset of the reruns: another data order, same everything else


def validation_mixtures(
    exp: Experiment, chosen: Sequence[float] | None = None
) -> list[list[float]]:
    """Uniform, then n_mixtures - 1 Dirichlet draws, then the chosen mixture when given."""
    k = len(exp.domains)
    cfg = exp.validation
    draws = simplex.dirichlet(k, cfg.n_mixtures - 1, cfg.concentration, seed=exp.seed + DRAW_SEED)
    mixtures = [simplex.uniform(k).tolist(), *draws.tolist()]
    if chosen is not None:
        mixtures.append([float(a) for a in simplex.validate(chosen, exp.domains)])
    return mixtures


def run_plan(exp: Experiment, n_mixtures: int) -> list[tuple[int, int]]:
    """(mixture index, seed) of every real run: each mixture once with the experiments' seed,
    then the first `reruns` of (the Dirichlet draws, uniform, the chosen mixture) again with
    another data order: with as many reruns as mixtures, every one is trained twice."""
    plan = [(i, exp.seed) for i in range(n_mixtures)]
    draws = exp.validation.n_mixtures
    order = [*range(1, min(draws, n_mixtures)), 0, *range(draws, n_mixtures)]
    return plan + [(i, exp.seed + RERUN_SEED) for i in order[: exp.validation.reruns]]


def run_labels(exp: Experiment, n_mixtures: int, plan: list[tuple[int, int]]) -> list[str]:
    """What each planned run is, for people: `uniform`, `draw 3`, `chosen`, `draw 1, rerun`."""
    chosen = n_mixtures - 1 if n_mixtures > exp.validation.n_mixtures else None

    def name(i: int) -> str:
        return "uniform" if i == 0 else "chosen" if i == chosen else f"draw {i}"

    return [name(i) + (", rerun" if seed != exp.seed else "") for i, seed in plan]


def validation_ref(
    exp: Experiment,
    mixtures: Sequence[Sequence[float]],
    runs: Sequence[ArtifactRef],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    utility_scale: Mapping[str, Any] | None = None,
) -> ArtifactRef:
    spec = {
        "validation": dump_config(exp.validation),
        "evaluation": evaluation_spec(exp),
        "group_weights": exp.search.group_weights,
        "mixtures": [[float(a) for a in m] for m in mixtures],
        "runs": [r.key for r in runs],
        "seed": exp.seed,
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
        "probe": probe.key if probe is not None else None,
        "utility_scale": dict(utility_scale or {}),
    }
    return ArtifactRef.for_spec("validation", "proxy", spec, code=code_version("validation"))


class _Scorer:
    """One live model: merges set in place, real runs loaded into it, every one scored alike."""

    def __init__(self, exp, store, data, base, experts, probe) -> None:
        self.exp = exp
        self.device = resolve_device(exp.runtime.device)
        self.prepared = load_prepared(store.local_dir(data))
        if exp.validation.metrics == "all":
            self.bench = _bench(exp, store, data, base, experts, probe)
            self.merger, self.model = self.bench.merger, self.bench.evaluator.model
        else:
            self.bench = None
            self.model = load_model(str(store.local_dir(base)), exp.model, self.device)
            base_state, states = merge_states(exp, store, base, experts, self.device)
            self.merger = InMemoryMerger(self.model, base_state, states, names=exp.domains)

    def proxy(self, alpha: np.ndarray) -> None:
        """The merge as the search scored it (corrected when evaluation.proxy says so)."""
        if self.bench is not None:
            self.bench.set_mixture(alpha)
        else:
            self.plain(alpha)

    def plain(self, alpha: np.ndarray) -> None:
        """The plain merge that stands for the data mixture alpha (`merge.replay`)."""
        replay = self.exp.training.replay
        self.merger.apply(mixture_merge_weights(alpha, self.exp.domains, replay))

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(state[name])

    def score(
        self, docs: bool = False
    ) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Metrics as the merges were scored, per-block held-out losses (for noise) and, with
        `docs`, each task's per-document scores (what of the runs' noise is the documents')."""
        metrics: dict[str, float] = {}
        blocks: dict[str, np.ndarray] = {}
        per_doc: dict[str, np.ndarray] = {}
        if self.bench is not None and docs:
            metrics, per_doc = self.bench.evaluator.evaluate_docs()
        elif self.bench is not None:  # one forward pass over the held-out set gives both
            metrics, blocks = self.bench.evaluator.evaluate_blocks()
        batch = self.exp.evaluation.batch_size
        for domain, held in self.prepared.heldout.items():
            if domain not in blocks:
                blocks[domain] = block_losses(self.model, held, batch, self.device).numpy()
            metrics.setdefault(f"loss.{domain}", float(blocks[domain].mean()))
        return metrics, blocks, per_doc


def validate_proxy(
    exp: Experiment,
    store: Store,
    mixtures: Sequence[Sequence[float]],
    runs: Sequence[ArtifactRef],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    utility_scale: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Score merges (and corrected merges) and real runs alike; rank them against each other.

    `runs` are the refs of `run_plan(exp, len(mixtures))`, in that order. `utility_scale`
    (the choice's `scale`) puts the groups of the utility on the scale the search used.
    """
    ref = validation_ref(exp, mixtures, runs, data, base, experts, probe, utility_scale)
    if store.exists(ref):
        return ref
    start = time.perf_counter()
    plan = run_plan(exp, len(mixtures))
    if len(runs) != len(plan):
        raise ValueError(f"validate_proxy: {len(runs)} runs for a plan of {len(plan)}")
    alphas = [simplex.validate(m, exp.domains) for m in mixtures]
    k = len(exp.domains)
    scorer = _Scorer(exp, store, data, base, experts, probe)
    direction = _directions(store, probe, alphas, exp.training.replay) if probe else None
    rows: list[dict[str, Any]] = []
    blocks: list[dict[str, np.ndarray]] = []
    run_docs: list[dict[str, Any]] = []  # the real runs' per-document scores
    proxies = 1 + (direction is not None) + exp.validation.rescaled
    total = k + proxies * len(alphas) + len(plan)
    done = 0

    def record(kind: str, index: int, seed: int | None, alpha: np.ndarray, extra=None) -> None:
        nonlocal done
        metrics, per_block, per_doc = scorer.score(docs=kind in ("mix", "rerun"))
        row = {"kind": kind, "mixture": index, "seed": seed}
        if per_doc:
            run_docs.append({"kind": kind, "mixture": index, **doc_columns(per_doc)})
        row.update({f"alpha.{d}": float(a) for d, a in zip(exp.domains, alpha, strict=True)})
        rows.append({**row, **metrics, **(extra or {})})
        blocks.append(per_block)
        done += 1
        if progress is not None:
            progress(done, total, f"validation: {kind} {index}")

    replay = exp.training.replay
    trained_on = expert_mixtures(k, replay)
    for j, vertex in enumerate(simplex.vertices(k)):  # the experts: merge weights at a corner
        scorer.merger.apply(vertex)
        record("expert", j, exp.seed, trained_on[j])
    base_state = load_state(store.local_dir(base), exp.model, scorer.device)
    theta0 = torch.cat([base_state[n].reshape(-1) for n, _ in scorer.model.named_parameters()])
    del base_state
    merges: list[torch.Tensor] = []
    for i, alpha in enumerate(alphas):
        scorer.proxy(alpha)
        record("merge", i, None, alpha)
        scorer.plain(alpha)  # the plain merge, whatever the proxy, for the gaps
        merges.append(flat_params(scorer.model).clone())
    for (i, seed), run in zip(plan, runs, strict=True):
        state = load_state(store.local_dir(run), exp.model, scorer.device)
        scorer.load(state)
        theta = flat_params(scorer.model)
        gap = (theta - merges[i]).double()
        extra = {"gap_norm": float(gap.norm()), "update_norm": float((theta - theta0).norm())}
        if direction is not None and seed == exp.seed:
            d = direction[i].double()
            extra.update(gap_dot=float(gap @ d), dir_sq=float(d @ d))
        record("mix" if seed == exp.seed else "rerun", i, seed, alphas[i], extra)
    fit: dict[str, Any] = {}
    if direction is not None:
        fit = _fit_scale(store, probe, rows, alphas, replay)
        for i, alpha in enumerate(alphas):
            scorer.plain(alpha)
            with torch.no_grad():
                _add_flat(scorer.model, fit["loo_scale"][i] * direction[i])
            record("corrected", i, None, alpha)
    if exp.validation.rescaled:
        # the merged update stretched to the alpha-weighted experts' length ||theta_k - theta_0||
        tau = [float((e - theta0).norm()) for e in _vertex_flats(scorer, k)]
        for i, alpha in enumerate(alphas):
            update = merges[i] - theta0
            stretch = float(np.dot(alpha, tau)) / max(float(update.norm()), 1e-30)
            with torch.no_grad():
                _set_flat(scorer.model, theta0 + stretch * update)
            record("rescaled", i, None, alpha, {"stretch": stretch})
    frame = pd.DataFrame(rows)
    tasks = exp.evaluation.tasks if exp.validation.metrics == "all" else []
    out = store.staging(ref)
    frame.to_parquet(out / "rows.parquet", index=False)
    if run_docs:
        pd.DataFrame(run_docs).to_parquet(out / RUN_DOCS, index=False)
    save_file(
        {
            d: torch.from_numpy(np.stack([b[d] for b in blocks])).float().contiguous()
            for d in exp.domains
        },
        out / "heldout_blocks.safetensors",
    )
    info = {
        "compare": {  # what `validation_table.load_validation` needs besides the rows
            "domains": exp.domains,
            "tasks": [[t.name, t.group] for t in tasks],
            "weights": exp.search.group_weights or None,
            "chosen": len(mixtures) - 1 if len(mixtures) > exp.validation.n_mixtures else None,
            "scale": dict(utility_scale or {}),
        },
        "step_scale_fit": fit,
        "utility_scale": (utility_scale or {}).get("normalise", "raw"),
        "budget": {"name": exp.validation.budget, "steps": validation_train(exp).steps},
        "seconds": time.perf_counter() - start,
    }
    (out / "validation.json").write_text(canonical_json(finite_json(info)))
    plot_validation(frame, [t.group for t in tasks], out / "validation.png")
    return store.publish(ref, out, info={"seconds": info["seconds"]})


def _directions(
    store: Store, probe: ArtifactRef, alphas: Sequence[np.ndarray], replay: float
) -> list[torch.Tensor]:
    """d(alpha) = sum_kj c_kj v_kj (P,) per mixture (`outer_weights`): the unscaled predicted
    gap."""
    shards, _, _ = load_probe(store, probe)
    return list(shards.deltas(np.stack(alphas), replay=replay))


def _vertex_flats(scorer: _Scorer, k: int) -> list[torch.Tensor]:
    """The experts' flat weights (K of (P,)), read from the merger at the corners."""
    out = []
    for vertex in simplex.vertices(k):
        scorer.merger.apply(vertex)
        out.append(flat_params(scorer.model).clone())
    return out


def _set_flat(model: torch.nn.Module, flat: torch.Tensor) -> None:
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.copy_(flat[offset : offset + n].view(p.shape).to(p.dtype))
        offset += n


def _add_flat(model: torch.nn.Module, delta: torch.Tensor) -> None:
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.add_(delta[offset : offset + n].view(p.shape).to(p.dtype))
        offset += n


def _fit_scale(
    store: Store,
    probe: ArtifactRef,
    rows: list[dict[str, Any]],
    alphas: Sequence[np.ndarray],
    replay: float,
) -> dict[str, Any]:
    """Least-squares step scale of the measured gaps onto d(alpha), all and leave-one-out."""
    mix = {r["mixture"]: r for r in rows if r["kind"] == "mix"}
    idx = sorted(mix)
    dot = np.array([mix[i]["gap_dot"] for i in idx])
    sq = np.array([mix[i]["dir_sq"] for i in idx])
    norms = np.array([mix[i]["gap_norm"] for i in idx])
    scale = float(dot.sum() / sq.sum()) if sq.sum() > 0 else 0.0
    loo = [
        float((dot.sum() - dot[j]) / (sq.sum() - sq[j])) if sq.sum() > sq[j] else 0.0
        for j in range(len(idx))
    ]
    _, summary, info = load_probe(store, probe)
    mixed = np.stack([alphas[i] for i in idx])
    predicted = predicted_delta_norms(mixed, summary.gram, 1.0, replay)
    cosine = dot / np.maximum(norms * np.sqrt(sq), 1e-30)
    # share of the measured gap the fitted correction explains: 1 - |gap - s d|^2 / |gap|^2
    residual = norms**2 - 2 * scale * dot + scale**2 * sq
    explained = 1 - residual.sum() / max((norms**2).sum(), 1e-30)
    return {
        "scale": scale,
        "theory_scale": info["step_scale"],
        "scale_over_theory": scale / info["step_scale"],
        "loo_scale": loo,
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "explained": float(explained),
        "norm_spearman": ranking.spearman(predicted, norms) if len(idx) > 1 else math.nan,
        "norm_pearson": ranking.pearson(predicted, norms) if len(idx) > 1 else math.nan,
    }
