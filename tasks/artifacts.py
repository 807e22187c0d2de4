"""Figures in Prefect artifacts: the UI renders a markdown artifact's images only from URLs a
browser can load, never from a path on the worker's disk or in the store."""

from __future__ import annotations

import base64
import re

from parammix_core.store import ArtifactRef, Store

# Above this a figure is not inlined (the API stores the artifact in one database row; every
# UI visit downloads it): a presigned URL on S3, its store address otherwise.
MAX_INLINE_BYTES = 1_500_000
SIGNED_SECONDS = 7 * 24 * 3600
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def inline_figures(store: Store, ref: ArtifactRef, markdown: str) -> str:
    """`markdown` with each `![alt](name.png)` of the artifact `ref` made loadable by a browser:
    a data URI when small, a presigned URL (S3) or a note with its address when large."""
    manifest = store.check(ref, verify="size")
    folder = store.local_dir(ref)

    def loadable(match: re.Match[str]) -> str:
        alt, rel = match.group(1), match.group(2)
        if rel not in manifest["files"]:
            return match.group(0)
        data = (folder / rel).read_bytes()
        if len(data) <= MAX_INLINE_BYTES:
            return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"
        path = store.file_path(ref, rel, manifest)
        if not store.is_local and hasattr(store.fs, "sign"):
            return f"![{alt}]({store.fs.sign(path, expiration=SIGNED_SECONDS)})"
        return f"*{alt}: {len(data) / 1e6:.1f} MB, too large to show here; `{store.uri(ref, rel)}`*"

    return _IMAGE.sub(loadable, markdown)
