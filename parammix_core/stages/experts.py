"""Stage train_expert: one expert per domain from the shared base."""

from __future__ import annotations

from parammix_core.config import Experiment
from parammix_core.merge.replay import expert_mixtures
from parammix_core.model import save_model
from parammix_core.stages.common import Progress, train_from_base, training_spec
from parammix_core.stages.data import corpus_identity
from parammix_core.stages.launch import is_writer, launch, should_launch
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store


def expert_ref(exp: Experiment, domain: str, data: ArtifactRef, base: ArtifactRef) -> ArtifactRef:
    replay = exp.training.replay
    # without replay only the expert's own corpus trains it, not the other domains'
    source = data if replay else corpus_identity(exp, domain)
    spec = {"domain": domain, **training_spec(exp, exp.training.expert, exp.seed, source, base)}
    if replay:
        spec["replay"] = replay
    return ArtifactRef.for_spec("expert", domain, spec, code=code_version("expert"))


def expert_weights(exp: Experiment, domain: str) -> list[float]:
    """The expert's training mixture: its domain, plus `training.replay` of the uniform mix."""
    mixtures = expert_mixtures(len(exp.domains), exp.training.replay)
    return mixtures[exp.domains.index(domain)].tolist()


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
    if should_launch(exp):
        return launch("train_expert", exp, store, ref, domain, data, base, progress=progress)
    model, _, result = train_from_base(
        exp,
        store,
        ref,
        data,
        base,
        expert_weights(exp, domain),
        exp.training.expert,
        exp.seed,
        progress,
        domain,
    )
    if not is_writer():  # another rank of a launched run: rank 0 publishes
        return ref
    out = store.staging(ref)
    save_model(model, out)
    info = {"domain": domain, "final_loss": result.final_loss, "seconds": result.seconds}
    return store.publish(ref, out, info=info)
