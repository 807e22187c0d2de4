"""`parammix export`: one mixture's merged model as a checkpoint anyone can load.

The folder holds theta(alpha) = theta_base + sum_k w_k (theta_k - theta_base), w the merge
weights of the data mixture alpha (`merge.replay`), computed per
tensor in float64 from the store's base and experts and rounded once (`streaming_merge`, so
memory stays bounded whatever the model size), with the base's config.json and
generation_config.json, the experiment's tokenizer, a model card (README.md) naming the mixture
and every input by its store address and key, and mergekit.yaml: the same merge as a mergekit
`task_arithmetic` config over the checkpoint folders it was computed from. Nothing is trained:
the experts must already be in the store. The folder appears whole or not at all (built in a
temporary sibling, then renamed), and a non-empty one is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from parammix_core import __version__, simplex
from parammix_core.config import Experiment
from parammix_core.data import load_tokenizer
from parammix_core.data.prepare import TOKENIZER_DIR
from parammix_core.merge import streaming_merge
from parammix_core.merge.replay import merge_weights
from parammix_core.stages.published import Models, published_choice, published_models
from parammix_core.stages.search import load_choice
from parammix_core.store import Store

CARD = "README.md"
MERGEKIT = "mergekit.yaml"
GENERATION_CONFIG = "generation_config.json"


class ExportError(ValueError):
    """A mixture or output folder the export refuses; the message names the option."""


@dataclass(frozen=True)
class Exported:
    """Where the checkpoint went, the mixture merged, and where that mixture came from."""

    path: Path
    mixture: dict[str, float]
    source: str


def parse_mixture(text: str, domains: Sequence[str]) -> np.ndarray:
    """`math=0.5,code=0.5` as a point of the simplex in config order; an omitted domain
    weighs 0, so a typo shows as an unknown domain or a sum that is not 1."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ExportError(f"--mixture {text!r}: {item.strip()!r} is not DOMAIN=WEIGHT")
        if name in weights:
            raise ExportError(f"--mixture {text!r}: domain {name!r} is given twice")
        try:
            weights[name] = float(raw)
        except ValueError:
            raise ExportError(f"--mixture {text!r}: {raw.strip()!r} is not a number") from None
    try:
        return simplex.from_mapping({d: weights.get(d, 0.0) for d in domains} | weights, domains)
    except simplex.SimplexError as err:
        raise ExportError(f"--mixture {text!r}: {err}") from None


def export_model(
    exp: Experiment, store: Store, out: Path, alpha: np.ndarray | None = None
) -> Exported:
    """Write the merged model of `alpha` (default: the run's chosen mixture) to `out`."""
    out = Path(out)
    store.require_store()  # a file or a folder of other things: said so, not "run first"
    check_out(out, Path(store.root) if store.is_local else None)
    models = published_models(exp, store)
    if alpha is None:
        choice = published_choice(exp, store, models)
        alpha = simplex.from_mapping(load_choice(store, choice).alpha, exp.domains)
        source = f"the run's chosen mixture (`{store.uri(choice)}`, key `{choice.key}`)"
    else:
        source = "given on the command line (`parammix export --mixture`)"
    mixture = {d: float(a) for d, a in zip(exp.domains, alpha, strict=True)}
    tmp = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:12]}"
    try:
        _build(tmp, exp, store, models, mixture, source)
        _move(tmp, out)
    except OSError as err:  # where the export is written (read-only, full): named as --out
        shutil.rmtree(tmp, ignore_errors=True)
        if err.filename is None or not str(err.filename).startswith(str(tmp)):
            raise
        raise ExportError(f"--out {out}: cannot write there ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(out, mixture, source)


def check_out(out: Path, store_root: Path | None = None) -> None:
    """A new or empty folder only, never the current folder (it cannot be renamed onto) nor
    inside the store (only artifacts live there): an export never overwrites anything."""
    where = out.resolve()
    if where == Path.cwd().resolve():
        raise ExportError(f"--out {out}: the current folder; give a new folder (e.g. merged/)")
    if store_root is not None and where.is_relative_to(store_root.resolve()):
        raise ExportError(f"--out {out}: inside the store ({store_root}); give a folder outside it")
    if not out.parent.is_dir():  # as `import --out`: a typo'd path is not made (nor left)
        parent = out.parent.resolve()
        what = (
            f"{parent} is not a folder"
            if parent.exists()
            else f"the folder {parent} does not exist"
        )
        raise ExportError(f"--out {out}: {what}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "is not empty"
        raise ExportError(f"--out {out}: {what}; refusing to overwrite it (give a new folder)")


def _move(tmp: Path, out: Path) -> None:
    """Rename the finished export to `out`: an empty folder is replaced, anything else kept."""
    try:
        os.rename(tmp, out)
    except OSError as err:  # filled, or made a file, while the export ran
        raise ExportError(f"--out {out}: cannot put the export there ({err.strerror})") from None


def _build(
    tmp: Path,
    exp: Experiment,
    store: Store,
    models: Models,
    mixture: dict[str, float],
    source: str,
) -> None:
    """The whole export in `tmp`: weights and config, tokenizer, model card, mergekit.yaml."""
    base = store.local_dir(models.base)
    experts = {d: store.local_dir(r) for d, r in models.experts.items()}
    alpha = [mixture[d] for d in exp.domains]
    w = merge_weights(alpha, exp.training.replay)
    weights = {d: float(x) for d, x in zip(exp.domains, w, strict=True)}
    streaming_merge(base, list(experts.values()), w, tmp)  # config.json comes along
    if (base / GENERATION_CONFIG).is_file():
        shutil.copy2(base / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
    load_tokenizer(store.local_dir(models.data) / TOKENIZER_DIR).save_pretrained(tmp)
    (tmp / MERGEKIT).write_text(mergekit_config(base, experts, weights, exp.model.dtype))
    (tmp / CARD).write_text(model_card(exp, store, models, mixture, weights, source))


def mergekit_config(
    base: Path, experts: dict[str, Path], weights: dict[str, float], dtype: str
) -> str:
    """The same merge as mergekit's task_arithmetic: base + sum_k weight_k (model_k - base);
    with normalize false the merge weights are used as given (they sum to 1 already)."""
    config = {
        "merge_method": "task_arithmetic",
        "base_model": str(base),
        "models": [
            {"model": str(path), "parameters": {"weight": weights[d]}}
            for d, path in experts.items()
        ],
        "parameters": {"normalize": False},
        "dtype": dtype,
    }
    header = [
        "# Written by `parammix export`: the merge of this folder as a mergekit task_arithmetic",
        "# config. base_model is the base; one model per domain:",
        *(f"#   {d}: {path}" for d, path in experts.items()),
        "# These are the store's checkpoint folders as seen from the exporting machine. They hold",
        "# no tokenizer: run `mergekit-yaml mergekit.yaml OUT --no-copy-tokenizer`, then copy",
        "# this folder's tokenizer files into OUT.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False)


def model_card(
    exp: Experiment,
    store: Store,
    models: Models,
    mixture: dict[str, float],
    weights: dict[str, float],
    source: str,
) -> str:
    """README.md: the mixture, its merge weights, its inputs by store address and key, and how
    it was made."""
    named = ", ".join(f"{d}={w:.4g}" for d, w in mixture.items())
    rows = [
        f"| {d} | {a:.6g} | {weights[d]:.6g} | `{store.uri(models.experts[d])}` "
        f"| `{models.experts[d].key}` |"
        for d, a in mixture.items()
    ]
    replay = exp.training.replay
    trained = (
        f"each trained on its domain with a replay of {replay:g} of the uniform mix of every "
        f"domain, so the data mixture alpha is merged at w = (alpha - {replay:g} / K) / "
        f"(1 - {replay:g})"
        if replay
        else "each trained on its domain alone, so the data mixture alpha is merged at w = alpha"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "---",
        "library_name: transformers",
        "tags: [parammix, merge, task_arithmetic]",
        "---",
        "",
        f"# {exp.name}: merged model of the mixture {named}",
        "",
        "The weights are theta_base + sum_k w_k (theta_k - theta_base): one expert per data "
        f"domain, trained from a shared base, {trained} (merge weights below). The mixture: "
        f"{source}.",
        "",
        "| domain | mixture | merge weight | expert (store address) | key |",
        "| --- | ---: | ---: | --- | --- |",
        *rows,
        "",
        f"Base: `{store.uri(models.base)}` (key `{models.base.key}`).  ",
        f"Tokenizer: `{store.uri(models.data, TOKENIZER_DIR)}` (key `{models.data.key}`).  ",
        f"Store: `{store.url}`. Experiment: `{exp.name}` (seed {exp.seed}).",
        "",
        "## How it was made",
        "",
        f"`parammix export` (parammix {__version__}, {stamp}) read the base and the experts from "
        "the store, computed every tensor in float64 and rounded it once to "
        f"{exp.model.dtype}; config.json and {GENERATION_CONFIG} are the base's, the "
        "tokenizer is the experiment's. Nothing was trained. `mergekit.yaml` in this folder "
        "is the same merge as a mergekit `task_arithmetic` config (the merge weights above, "
        "normalize false) over the checkpoint folders it was computed from.",
        "",
        "<details><summary>The experiment's config</summary>",
        "",
        "```yaml",
        exp.to_yaml().rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
