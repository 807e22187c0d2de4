"""A fifth domain that costs what it weighs: the default plus a badly extracted web crawl.

    python benchmarks/crawl_domain.py --dir /tmp/crawl   # writes crawl.jsonl and crawl.yaml
    python benchmarks/search_fidelity.py --long --seed 0 --dir /tmp/crawl/fid --budgets 8 \
        --strategies multifidelity real merges --config /tmp/crawl/crawl.yaml

On the embedded default the best mixture any search finds gains about 0.0035 of utility over
uniform, below what a choice's grading can tell apart, so no search can be shown to beat
another there. Real pools hold domains that hurt: a crawl whose text extraction scrambled the
words. This writes one (the default's own web prose, another seed's documents, every line's
words shuffled with a fixed seed) and an experiment config with the default's four domains
plus it, so uniform spends a fifth of its data on it and a search has something to win.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CRAWL_SEED = 77  # the web documents drawn and the shuffle of their words
CRAWL_CHARS = 2_000_000  # more than the default's 400k training tokens per domain need


def scrambled(text: str, rng: random.Random) -> str:
    """`text` with the words of each line in a random order (line breaks kept)."""
    lines = []
    for line in text.split("\n"):
        words = line.split()
        rng.shuffle(words)
        lines.append(" ".join(words))
    return "\n".join(lines)


def write_crawl(folder: Path) -> Path:
    """crawl.jsonl and crawl.yaml in `folder`; returns the config's path."""
    from parammix_core.data.sources import web_texts

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(CRAWL_SEED)
    corpus = folder / "crawl.jsonl"
    with corpus.open("w") as f:
        for text in web_texts(CRAWL_SEED, CRAWL_CHARS):
            f.write(json.dumps({"text": scrambled(text, rng)}) + "\n")
    config = folder / "crawl.yaml"
    builtins = "".join(
        f"    - {{name: {d}, builtin: {d}}}\n" for d in ("math", "code", "sft", "web")
    )
    config.write_text(
        "# The embedded default plus a crawl of scrambled words (benchmarks/crawl_domain.py)\n"
        f"name: default-plus-crawl\ndata:\n  domains:\n{builtins}"
        f"    - {{name: crawl, paths: [{corpus.resolve()}]}}\n"
    )
    return config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="folder for crawl.jsonl and crawl.yaml")
    config = write_crawl(p.parse_args().dir)
    lines = sum(1 for _ in config.with_name("crawl.jsonl").open())
    print(f"wrote {config} and its corpus ({lines} documents)")


if __name__ == "__main__":
    main()
