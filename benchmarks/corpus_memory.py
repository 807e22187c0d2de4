"""Peak memory and speed of `prepare_corpora` on a corpus bigger than it may hold, and the
peak memory of training on what it wrote, measured in fresh processes.

    python benchmarks/corpus_memory.py [--gb 2.0] [--dir /tmp] [--steps 40]
                                       [--max-train-tokens N] [--baseline-tokens N]

Writes a JSONL corpus of `--gb` GB of distinct generated documents (in a temporary folder under
`--dir`, deleted after), then, each in its own process: prepares it (one domain, the default
cleaning, tokenizer trained here; every document is read, cleaned and shuffled, and tokenised
up to `--max-train-tokens`, by default all of them), reporting peak RSS and tokens/s; encodes
as many tokens of the corpus (or the first `--baseline-tokens`) with the trained tokenizer's
own `encode_batch` (the same batch size; only the encode calls timed), the speed to compare
with; prepares a tenth of the documents with a tenth of the cap; and trains a micro model
(configs/micro.yaml's shape) for `--steps` steps on each prepared corpus, reporting both peaks.
Goals (issue 17): preparation peak <= 1.5 GB, tokens/s within 2x of encode_batch, training
peaks within 20 % of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from random_checkpoints import run_measured

ROOT = Path(__file__).resolve().parents[1]

PREPARE = """
import json, sys, time
from pathlib import Path
from parammix_core.config import DataConfig, DomainSpec
from parammix_core.data import prepare_corpora
path, out = sys.argv[1], Path(sys.argv[2])
max_documents, cap = int(sys.argv[3]), int(sys.argv[4])
spec = DomainSpec(name="big", paths=[path], max_documents=max_documents or None)
cfg = DataConfig(domains=[spec], max_train_tokens=cap)
t0 = time.perf_counter()
stats = prepare_corpora(cfg, seed=0, out_dir=out)["big"]
print(json.dumps({"seconds": time.perf_counter() - t0, **stats}))
"""
ENCODE = """
import itertools, json, sys, time
from parammix_core.data import load_tokenizer
from parammix_core.data.pack import ENCODE_BATCH
tok = load_tokenizer(sys.argv[2]).backend_tokenizer
limit = int(sys.argv[3])
tokens = chars = 0
seconds = 0.0
with open(sys.argv[1], "rb") as f:
    lines = itertools.takewhile(lambda _: tokens < limit, f)
    while batch := [json.loads(line)["text"] for line in itertools.islice(lines, ENCODE_BATCH)]:
        t0 = time.perf_counter()
        encodings = tok.encode_batch(batch, add_special_tokens=False)
        seconds += time.perf_counter() - t0
        tokens += sum(len(e.ids) + 1 for e in encodings)  # + eos, as prepared
        chars += sum(map(len, batch))
print(json.dumps({"seconds": seconds, "tokens": tokens, "chars": chars}))
"""
TRAIN = """
import json, sys, time, torch
from pathlib import Path
from parammix_core.config import ModelConfig, TrainConfig
from parammix_core.data import load_prepared
from parammix_core.model import build_model
from parammix_core.train import train
data = load_prepared(Path(sys.argv[1]))
tok = data.tokenizer
micro = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64)
model = build_model(micro, len(tok), 128, 0, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
cfg = TrainConfig(steps=int(sys.argv[3]), batch_size=8, lr=1e-3, warmup_steps=2,
                  checkpoint_every=10**6)
t0 = time.perf_counter()
result = train(model, data.train, [1.0], cfg, 0, Path(sys.argv[2]), torch.device("cpu"))
print(json.dumps({"seconds": time.perf_counter() - t0, "blocks": len(data.train["big"])}))
"""

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "are",
    "be",
    "it",
    "an",
    "which",
    "or",
    "model",
    "data",
    "token",
    "corpus",
    "mixture",
    "expert",
    "merge",
    "weight",
    "domain",
    "train",
    "loss",
    "held",
    "out",
    "block",
    "shard",
    "memory",
    "stream",
    "bucket",
    "shuffle",
    "seed",
    "python",
    "code",
    "math",
    "proof",
    "theorem",
    "number",
    "integer",
    "function",
    "return",
    "value",
    "list",
    "dict",
    "string",
    "file",
    "line",
    "column",
    "row",
    "batch",
    "step",
    "rate",
    "gradient",
]


def write_corpus(path: Path, gb: float, seed: int = 0) -> int:
    """Distinct JSONL documents of 300-4000 characters until `gb` GB; returns their count."""
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS + [f"w{i}" for i in range(5000)])
    sentences = [
        " ".join(rng.choice(vocab, rng.integers(6, 20))).capitalize() + "." for _ in range(50_000)
    ]
    target, written, docs = int(gb * 1e9), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            picks = rng.integers(0, len(sentences), size=(4096, 40))
            lengths = rng.integers(3, 40, size=4096)
            lines = []
            for row, n in zip(picks, lengths, strict=True):
                text = f"Document {docs}. " + " ".join(sentences[i] for i in row[:n])
                lines.append(json.dumps({"text": text}) + "\n")
                docs += 1
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
    return docs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gb", type=float, default=2.0, help="corpus size to generate")
    p.add_argument("--dir", default="/tmp", help="where the temporary corpus goes")
    p.add_argument("--steps", type=int, default=40, help="micro-model training steps")
    p.add_argument(
        "--max-train-tokens",
        type=int,
        default=10**12,
        help="the preparation's cap (default: all of the corpus); the tenth gets a tenth",
    )
    p.add_argument(
        "--baseline-tokens",
        type=int,
        default=0,
        help="tokens the encode_batch baseline encodes (default 0: as many as prepared); the "
        "generated documents are alike, so a sample gives the same rate in less time",
    )
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    py = sys.executable
    mib = 2**20
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        docs = write_corpus(corpus, args.gb)
        print(f"corpus: {corpus.stat().st_size / 1e9:.2f} GB, {docs:,} documents (JSONL)")
        _, idle, _ = run_measured([py, "-c", "import parammix_core.data, parammix_core.train"], env)
        print(f"idle process (python + torch + transformers + parammix_core): {idle / mib:.0f} MiB")
        rows = {}
        cap = args.max_train_tokens
        for label, max_docs, max_tokens in (("full", 0, cap), ("tenth", docs // 10, cap // 10)):
            out = tmp / label
            cmd = [py, "-c", PREPARE, str(corpus), str(out), str(max_docs), str(max_tokens)]
            _, peak, stdout = run_measured(cmd, env)
            rows[label] = {"peak": peak, "out": out, **json.loads(stdout)}
        full = rows["full"]
        tokens = full["train_tokens"] + full["heldout_tokens"]
        size = sum(f.stat().st_size for f in (full["out"] / "tokens").iterdir())
        print(
            f"prepare (full): {full['seconds']:.0f} s, peak RSS {full['peak'] / mib:.0f} MiB, "
            f"{tokens:,} tokens, {tokens / full['seconds']:,.0f} tokens/s; "
            f"{len(list((full['out'] / 'tokens').iterdir()))} shards, {size / 1e9:.2f} GB"
        )
        print(f"  stats: {json.dumps({k: v for k, v in full.items() if k not in ('peak', 'out')})}")
        limit = min(tokens, args.baseline_tokens or tokens)
        cmd = [py, "-c", ENCODE, str(corpus), str(full["out"] / "tokenizer"), str(limit)]
        _, _, stdout = run_measured(cmd, env)
        enc = json.loads(stdout)
        rate = enc["tokens"] / enc["seconds"]
        print(
            f"tokenizer encode_batch alone: {enc['tokens']:,} tokens of {enc['chars']:,} "
            f"characters in {enc['seconds']:.0f} s, {rate:,.0f} tokens/s; prepare is "
            f"{rate / (tokens / full['seconds']):.2f}x slower"
        )
        small = rows["tenth"]
        print(
            f"prepare (tenth): {small['seconds']:.0f} s, peak RSS {small['peak'] / mib:.0f} MiB, "
            f"{small['train_tokens'] + small['heldout_tokens']:,} tokens"
        )
        peaks = {}
        for label, row in rows.items():
            cmd = [py, "-c", TRAIN, str(row["out"]), str(tmp / f"ckpt-{label}"), str(args.steps)]
            _, peaks[label], stdout = run_measured(cmd, env)
            info = json.loads(stdout)
            print(
                f"train {args.steps} steps on {label} ({info['blocks']:,} blocks): "
                f"{info['seconds']:.1f} s, peak RSS {peaks[label] / mib:.0f} MiB"
            )
        print(f"training peak full / tenth: {peaks['full'] / peaks['tenth']:.3f}")


if __name__ == "__main__":
    main()
