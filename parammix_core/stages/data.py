"""Stage prepare_domains: the tokenised domain corpora."""

from __future__ import annotations

import platform

from parammix_core.config import Experiment
from parammix_core.data import prepare_corpora
from parammix_core.stages.common import Progress, checkpoint_root, dump_config
from parammix_core.store import ArtifactRef, Store


def data_ref(exp: Experiment) -> ArtifactRef:
    # The built-in code and web domains read this machine's Python sources and docs.
    spec = {
        "data": dump_config(exp.data),
        "seed": exp.seed,
        "tokenizer": tokenizer_source(exp),
        "python": platform.python_version(),
    }
    return ArtifactRef.for_spec("data", "domains", spec)


def tokenizer_source(exp: Experiment) -> str | None:
    """A user base checkpoint brings its own tokenizer unless one is named."""
    return exp.data.tokenizer or exp.model.checkpoint


def prepare_domains(exp: Experiment, store: Store, progress: Progress | None = None) -> ArtifactRef:
    if exp.model.checkpoint is not None:  # its tokenizer is read here: name the field
        checkpoint_root(exp)
    ref = data_ref(exp)
    if store.exists(ref):
        return ref
    out = store.staging(ref)
    cfg = exp.data.model_copy(update={"tokenizer": tokenizer_source(exp)})
    log = (lambda msg: progress(0, 1, msg)) if progress else None
    stats = prepare_corpora(cfg, exp.seed, out, progress=log)
    return store.publish(ref, out, info={"domains": exp.domains, "stats": stats})
