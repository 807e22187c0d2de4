"""Stage train_mixed: one real run from the base on a mixture, with the experts' budget.

What a merge stands in for; the validation trains a few (`validate`), the multi-fidelity
search more. Its own module so that its code version, and so every trained run's key, holds
only the training code: an edit to an evaluation task rescores the runs, never retrains them.
"""

from __future__ import annotations

from collections.abc import Sequence

from parammix_core import simplex
from parammix_core.config import Experiment
from parammix_core.model import save_model
from parammix_core.stages.common import Progress, train_from_base, training_spec
from parammix_core.stages.launch import is_writer, launch, should_launch
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store


def mixed_ref(
    exp: Experiment, alpha: Sequence[float], seed: int, data: ArtifactRef, base: ArtifactRef
) -> ArtifactRef:
    spec = {
        "alpha": [float(a) for a in alpha],
        "domains": exp.domains,
        **training_spec(exp, exp.training.expert, seed, data, base),
    }
    return ArtifactRef.for_spec("mixed", "run", spec, code=code_version("mixed"))


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
    weights = simplex.validate(alpha, exp.domains)
    ref = mixed_ref(exp, alpha, seed, data, base)
    if store.exists(ref):
        return ref
    if should_launch(exp):
        return launch("train_mixed", exp, store, ref, alpha, seed, data, base, progress=progress)
    model, _, result = train_from_base(
        exp,
        store,
        ref,
        data,
        base,
        weights.tolist(),
        exp.training.expert,
        seed,
        progress,
        "mixed run",
    )
    if not is_writer():  # another rank of a launched run: rank 0 publishes
        return ref
    out = store.staging(ref)
    save_model(model, out)
    info = {"alpha": weights.tolist(), "seed": seed, "final_loss": result.final_loss}
    return store.publish(ref, out, info={**info, "seconds": result.seconds})
