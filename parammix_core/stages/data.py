"""Stage prepare_domains: the tokenised domain corpora.

Keys notice change: the data artifact's key covers every corpus file's fingerprint (path,
size, mtime or ETag; sha256 with `data.fingerprint: content`) and the tokenizer's files, and
an expert's key covers only its own domain's corpus (`corpus_identity`), so editing one
corpus file, or adding a domain on a user's checkpoint, retrains only the experts it touches.
The shards are written in a folder named for the artifact, so a stopped run resumes them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from parammix_core.config import Experiment
from parammix_core.data import DataError, prepare_corpora
from parammix_core.data.fingerprint import fingerprint
from parammix_core.data.sources import snapshot
from parammix_core.stages.common import Progress, checkpoint_root, dump_config
from parammix_core.stages.exclusive import one_at_a_time
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json

NOT_IN_KEYS = {"fingerprint"}  # how change is noticed does not change the data


def data_ref(exp: Experiment) -> ArtifactRef:
    spec = {
        "data": _data_config(exp),
        "seed": exp.seed,
        "tokenizer": tokenizer_identity(exp),
        "files": {d.name: domain_files(exp, d.name) for d in exp.data.domains},
        "stdlib": snapshot.SHA256,  # what built-in code and web read
    }
    return ArtifactRef.for_spec("data", "domains", spec, code=code_version("data"))


def corpus_identity(exp: Experiment, domain: str) -> str:
    """What determines one domain's token blocks: its source and files, the shared cleaning,
    caps and block size, the seed, the tokenizer and the data code. Another domain's corpus
    does not enter unless the tokenizer is trained on it."""
    spec = next(d for d in exp.data.domains if d.name == domain)
    body = {
        "domain": spec.model_dump(mode="json"),
        "data": {k: v for k, v in _data_config(exp).items() if k != "domains"},
        "files": domain_files(exp, domain),
        "seed": exp.seed,
        "tokenizer": tokenizer_identity(exp),
        "stdlib": snapshot.SHA256,
        "code": code_version("data"),
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def tokenizer_source(exp: Experiment) -> str | None:
    """A user base checkpoint brings its own tokenizer unless one is named."""
    return exp.data.tokenizer or exp.model.checkpoint


# Files of a checkpoint that are no part of its tokenizer.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")


def tokenizer_identity(exp: Experiment) -> Any:
    """A given tokenizer: its path and files. One trained here depends on every domain."""
    source = tokenizer_source(exp)
    if source is None:
        return {
            "trained": _data_config(exp),
            "files": {d.name: domain_files(exp, d.name) for d in exp.data.domains},
        }
    options = exp.store.storage_options
    try:
        listed = fingerprint([f"{source.rstrip('/')}/*"], options, "metadata")
    except DataError:  # missing: prepare_domains names the field when it loads it
        return {"path": source, "files": "missing"}
    # A checkpoint folder holds its weights too: a new checkpoint with the same tokenizer must
    # not tokenize every corpus again. The tokenizer's files, by data.fingerprint.
    files = [entry for entry in listed if not entry[0].endswith(WEIGHT_SUFFIXES)]
    if exp.data.fingerprint == "content":
        files = fingerprint([entry[0] for entry in files], options, "content")
    return {"path": source, "files": files}


def _data_config(exp: Experiment) -> dict[str, Any]:
    return {k: v for k, v in dump_config(exp.data).items() if k not in NOT_IN_KEYS}


def domain_files(exp: Experiment, domain: str) -> list:
    spec = next(d for d in exp.data.domains if d.name == domain)
    if not spec.paths:
        return []
    try:
        return fingerprint(spec.paths, exp.store.storage_options, exp.data.fingerprint)
    except DataError as err:
        raise DataError(f"domain {domain!r}: {err}") from None


def build_dir(store: Store, ref: ArtifactRef) -> Path:
    """The local folder the data artifact is built in: the same one for the same artifact, so
    a stopped preparation resumes from the shards it left; outside the store, which a run
    with bad corpora must leave as it found it."""
    return store.cache_dir / "resume" / ref.path


def prepare_domains(exp: Experiment, store: Store, progress: Progress | None = None) -> ArtifactRef:
    if exp.model.checkpoint is not None:  # its tokenizer is read here: name the field
        checkpoint_root(exp)
    ref = data_ref(exp)
    if store.exists(ref):
        return ref
    out = build_dir(store, ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    with one_at_a_time(out):
        if store.exists(ref):  # published while this process waited for the folder
            return ref
        out.mkdir(exist_ok=True)
        cfg = exp.data.model_copy(update={"tokenizer": tokenizer_source(exp)})
        log = (lambda msg: progress(0, 0, msg)) if progress else None  # reports, not steps
        stats = prepare_corpora(cfg, exp.seed, out, progress=log, storage_options=store.options)
        published = store.publish(ref, out, info={"domains": exp.domains, "stats": stats})
        shutil.rmtree(out)  # published: a second copy of every token would only fill the disk
    return published
