"""Splitting long texts into documents: paragraph groups of at most CHUNK_CHARS characters."""

from __future__ import annotations

import re

# Longest document a splitter emits; below DataConfig.max_chars so nothing is truncated.
CHUNK_CHARS = 3000


def _chunks(text: str, limit: int) -> list[str]:
    """Group blank-line-separated paragraphs into pieces of at most `limit` characters."""
    out: list[str] = []
    cur = ""
    for para in re.split(r"\n[ \t]*\n", text):
        if not para.strip():
            continue
        while len(para) > limit:  # one huge paragraph: cut at the last newline or space
            cut = max(para.rfind("\n", 0, limit), para.rfind(" ", 0, limit))
            cut = cut if cut > limit // 2 else limit
            if cur:
                out.append(cur)
                cur = ""
            out.append(para[:cut])
            para = para[cut:].lstrip("\n")
        if cur and len(cur) + 2 + len(para) > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    if cur.strip():
        out.append(cur)
    return out
