"""Stages train_mixed and final_run: the base trained on a mixture, kept as a checkpoint.

A mixed run has the experts' budget: what a merge stands in for; the validation trains a few
(`validate`), the multi-fidelity search more. A final run has the final budget
(`final.train`): the mid-trained model the user wants, and its baselines (`final`); with
`validation.budget: final` the validation's runs are final runs. Both live
here, apart from every evaluation module, so that their code version, and so every trained
run's key, holds only the training code: an edit to an evaluation task rescores the runs,
never retrains them. Each run is a `transformers` checkpoint (safetensors, config, tokenizer)
that `from_pretrained` loads; its manifest's info holds alpha, seed, final loss and seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from parammix_core import simplex
from parammix_core.config import Experiment, TrainConfig
from parammix_core.model import save_model
from parammix_core.stages.common import Progress, train_from_base, training_spec
from parammix_core.stages.launch import is_writer, launch, should_launch
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store


def mixed_ref(
    exp: Experiment, alpha: Sequence[float], seed: int, data: ArtifactRef, base: ArtifactRef
) -> ArtifactRef:
    return _run_ref("mixed", exp, exp.training.expert, alpha, seed, data, base)


def final_run_ref(
    exp: Experiment, alpha: Sequence[float], seed: int, data: ArtifactRef, base: ArtifactRef
) -> ArtifactRef:
    return _run_ref("final", exp, exp.final.train, alpha, seed, data, base)


def validation_train(exp: Experiment) -> TrainConfig:
    """How the validation's real runs train: the experts' budget, or the final one."""
    return exp.final.train if exp.validation.budget == "final" else exp.training.expert


def _run_ref(
    stage: str,
    exp: Experiment,
    cfg: TrainConfig,
    alpha: Sequence[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
) -> ArtifactRef:
    spec = {
        "alpha": [float(a) for a in alpha],
        "domains": exp.domains,
        **training_spec(exp, cfg, seed, data, base),
    }
    return ArtifactRef.for_spec(stage, "run", spec, code=code_version("mixed"))


def train_mixed(
    exp: Experiment,
    store: Store,
    alpha: Sequence[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
    progress: Progress | None = None,
) -> ArtifactRef:
    """One real run on the mixture alpha with the experts' budget: what a merge stands in for."""
    ref = mixed_ref(exp, alpha, seed, data, base)
    cfg = exp.training.expert
    return _train(
        "train_mixed", "mixed run", ref, cfg, exp, store, alpha, seed, data, base, progress
    )


def final_run(
    exp: Experiment,
    store: Store,
    alpha: Sequence[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
    progress: Progress | None = None,
) -> ArtifactRef:
    """The base trained on alpha for the final budget; `final.score_final_run` scores it."""
    ref = final_run_ref(exp, alpha, seed, data, base)
    cfg = exp.final.train
    return _train("final_run", "final run", ref, cfg, exp, store, alpha, seed, data, base, progress)


def _train(
    stage: str,
    what: str,
    ref: ArtifactRef,
    cfg: TrainConfig,
    exp: Experiment,
    store: Store,
    alpha: Sequence[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
    progress: Progress | None,
) -> ArtifactRef:
    weights = simplex.validate(alpha, exp.domains)
    if store.exists(ref):
        return ref
    if should_launch(exp):
        return launch(stage, exp, store, ref, alpha, seed, data, base, progress=progress)
    model, prepared, result = train_from_base(
        exp, store, ref, data, base, weights.tolist(), cfg, seed, progress, what
    )
    if not is_writer():  # another rank of a launched run: rank 0 publishes
        return ref
    out = store.staging(ref)
    save_model(model, out)
    prepared.tokenizer.save_pretrained(out)
    info = {"alpha": weights.tolist(), "seed": seed, "final_loss": result.final_loss}
    return store.publish(ref, out, info={**info, "seconds": result.seconds})
