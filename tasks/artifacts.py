"""Figures as Prefect artifacts: the UI shows a markdown artifact's inline PNG, not a store path."""

from __future__ import annotations

import base64
import re

from prefect.artifacts import create_markdown_artifact

from parammix_core.store import ArtifactRef, Store

# Above this a figure is linked by its store address instead of inlined (the API stores the
# artifact in one database row; every UI visit downloads it).
MAX_INLINE_BYTES = 1_500_000


def publish_figures(store: Store, ref: ArtifactRef, prefix: str) -> list[str]:
    """One markdown artifact per PNG of a published store artifact; returns the keys."""
    manifest = store.check(ref, verify="size")
    folder = store.local_dir(ref)
    keys = []
    for rel in sorted(r for r in manifest["files"] if r.endswith(".png")):
        stem = rel.rsplit("/", 1)[-1].removesuffix(".png")
        key = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{stem}".lower()).strip("-")
        data = (folder / rel).read_bytes()
        if len(data) <= MAX_INLINE_BYTES:
            image = f"![{stem}](data:image/png;base64,{base64.b64encode(data).decode()})"
        else:
            image = f"[{stem}.png]({store.uri(ref, rel)}) ({len(data) / 1e6:.1f} MB)"
        create_markdown_artifact(
            f"### {stem.replace('_', ' ')}\n\n{image}\n\n`{store.uri(ref, rel)}`",
            key=key,
            description=f"{rel} of {ref.path}",
        )
        keys.append(key)
    return keys
