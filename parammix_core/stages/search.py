"""Stage optimise_mixture: the chosen mixture from the surrogates."""

from __future__ import annotations

from parammix_core.config import Experiment
from parammix_core.data import natural_weights
from parammix_core.search import Choice, choose_mixture
from parammix_core.stages.common import dump_config
from parammix_core.stages.surrogates import load_surrogates
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json


def choice_ref(exp: Experiment, surrogates: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    spec = {
        "search": dump_config(exp.search),
        "groups": exp.evaluation.groups,
        "seed": exp.seed,
        "surrogates": surrogates.key,
        "data": data.key,
    }
    return ArtifactRef.for_spec("choice", "mixture", spec, code=code_version("choice"))


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
