"""Stage report: the markdown report with its figures."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from parammix_core.config import Experiment
from parammix_core.plots import plot_discrepancy
from parammix_core.report import (
    final_section,
    markdown_table,
    real_training_outlook,
    run_summary,
    validation_section,
    write_report,
)
from parammix_core.stages.search import load_choice
from parammix_core.stages.surrogates import load_surrogates
from parammix_core.stages.validation_table import load_validation
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store


def report_ref(
    exp: Experiment,
    surrogates: ArtifactRef,
    choice: ArtifactRef,
    probe: ArtifactRef | None = None,
    validation: ArtifactRef | None = None,
    final: ArtifactRef | None = None,
) -> ArtifactRef:
    spec = {
        "name": exp.name,
        "surrogates": surrogates.key,
        "choice": choice.key,
        "probe": probe.key if probe is not None else None,
    }
    # only when present, so reports without these stages keep their addresses
    spec.update({k: r.key for k, r in (("validation", validation), ("final", final)) if r})
    return ArtifactRef.for_spec("report", "report", spec, code=code_version("report"))


def report(
    exp: Experiment,
    store: Store,
    surrogates: ArtifactRef,
    choice: ArtifactRef,
    probe: ArtifactRef | None = None,
    validation: ArtifactRef | None = None,
    final: ArtifactRef | None = None,
) -> ArtifactRef:
    ref = report_ref(exp, surrogates, choice, probe, validation, final)
    if store.exists(ref):
        return ref
    out = store.staging(ref)
    rows = store.load_parquet(surrogates, "rows.parquet")
    extra = {"Evaluation noise": noise_section(store.load_json(surrogates, "noise.json"))}
    lead = []
    if probe is not None:
        extra["Interference probe"] = probe_section(store, probe, rows, exp.domains, out)
    if validation is not None:
        (out / "validation.png").write_bytes(
            (store.local_dir(validation) / "validation.png").read_bytes()
        )
        info = load_validation(store, validation)
        extra["Proxy validation"] = validation_section(info)
        if outlook := real_training_outlook(info):
            lead.append(outlook)
    if final is not None:
        extra["Final mid-training"] = final_section(
            store.load_parquet(final, "comparison.parquet"), store.load_json(final, "final.json")
        )
    write_report(
        out,
        exp.name,
        exp.domains,
        exp.evaluation.groups,
        rows.drop(columns=["predicted_delta_norm"], errors="ignore"),
        load_surrogates(store, surrogates),
        load_choice(store, choice),
        extra=extra,
        lead=lead,
        replay=exp.training.replay,
    )
    return store.publish(ref, out, info={"name": exp.name})


def _signal_to_noise(spread: float, paired: float) -> str:
    """spread / paired stderr; with no paired noise (every document scored alike against
    uniform, e.g. exact match at 0 everywhere) the ratio is infinite or, with no spread, void."""
    if paired > 0 or math.isnan(paired):
        return f"{spread / paired:.1f}"
    return "inf" if spread > 0 else "- (no spread, no noise)"


def noise_section(noise: dict[str, dict[str, float]]) -> str:
    """Markdown: is the spread of each group over the mixtures above the paired noise?"""
    table = pd.DataFrame(
        [
            {
                "group": g,
                "sd over mixtures": f"{n['spread_sd']:.4f}",
                "paired stderr vs uniform (median)": f"{n['paired_stderr']:.4f}",
                "sd / paired stderr": _signal_to_noise(n["spread_sd"], n["paired_stderr"]),
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
        "(two random halves of the documents, Spearman-Brown corrected): near 1, the ranking "
        "of mixtures would survive a fresh draw of documents.\n\n" + markdown_table(table)
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
            f"||Delta(alpha)|| = s ||sum_kj a_k a_j (H_k g_j - H_k g_k)|| with "
            f"s = sum_(s<t) eta_s eta_t = {info['step_scale']:.4g} (the experts' learning rates, "
            "step by step). "
            "Mixtures where the proxy is expected to be least faithful:",
            markdown_table(worst[shown]),
            "![predicted discrepancy](discrepancy.png)",
        ]
    )


def report_path(store: Store, ref: ArtifactRef) -> str:
    return store.uri(ref, "report.md")


def report_text(store: Store, ref: ArtifactRef) -> str:
    """The report's markdown (read as text; nothing is deserialised)."""
    return store.read_text(ref, "report.md")


def summary(store: Store, refs: dict[str, ArtifactRef]) -> list[str]:
    """The lines every run ends with, from the refs the flow returns (cached or not)."""
    validation = load_validation(store, refs["validation"]) if "validation" in refs else None
    final = store.load_parquet(refs["final"], "comparison.parquet") if "final" in refs else None
    choice = load_choice(store, refs["choice"])
    return run_summary(choice, report_path(store, refs["report"]), validation, final)
