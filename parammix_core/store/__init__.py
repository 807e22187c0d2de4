"""The artifact store: content-addressed folders on any fsspec filesystem.

Every artifact (prepared corpora, a checkpoint, a batch of evaluation rows) is addressed by a
hash of everything that determines it:

    key  = sha256(canonical_json({stage, name, spec, code}))
    path = <root>/<stage>/<name>-<key[:24]>/

where `spec` holds the config slice that matters, the keys of the upstream artifacts and the
fingerprints of the files read, and `code` the stage's code version (`stages.versions`). Two
runs that would compute the same thing get the same key, so a finished artifact is found
again by any later run, whatever Prefect's database remembers.

When is an artifact there? Only when its `MANIFEST.json` is. A writer uploads the data files
under a fresh upload folder of its own (`<path>/files-<id>/`, multipart for large files) and
writes the manifest (sizes and sha256 of every file, and which upload folder holds them) last,
with a conditional create (`If-None-Match: *` on S3, a hard link locally): two writers never
mix their files, the first manifest wins, and a published artifact is never overwritten. A
crash at any point leaves either a complete artifact or an upload folder no manifest points to
(`garbage` lists those). Readers check the files against the manifest when they use them
(`verify="sha256"` re-hashes, `"size"` only compares sizes) and refuse any mismatch.

Credentials never pass through here as config: s3fs takes them from the environment (or the
caller's `storage_options`, filled from a Prefect block by the tasks), and no message, repr or
manifest ever contains them.

Only safetensors, JSON and parquet are ever loaded from the store: never pickle.

The package, by what each module holds: `address.py` (keys and `ArtifactRef`), `manifest.py`
(checking files against a manifest), `errors.py` (`StoreError`, `StoreUnavailable`),
`transfer.py` (moving bytes: the S3 part settings `CONCURRENCY` and `DOWNLOAD_PART`, patch them
there; create-only writes; backend errors explained), `cache.py` (verified local copies of a
remote store's artifacts), `marker.py` (the `STORE_ID` marker and which folders may become a
store) and `fsspec_store.py` (the `Store` itself).
"""

from parammix_core.store.address import KEY_CHARS, STAGES, ArtifactRef, canonical_json
from parammix_core.store.errors import StoreError, StoreUnavailable
from parammix_core.store.fsspec_store import LOADABLE, Store
from parammix_core.store.manifest import MANIFEST, Verify, sha256_file
from parammix_core.store.marker import MARKER
from parammix_core.store.transfer import CONCURRENCY, DOWNLOAD_PART

__all__ = [
    "CONCURRENCY",
    "DOWNLOAD_PART",
    "KEY_CHARS",
    "LOADABLE",
    "MANIFEST",
    "MARKER",
    "STAGES",
    "ArtifactRef",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Verify",
    "canonical_json",
    "sha256_file",
]
