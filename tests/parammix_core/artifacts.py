"""A small artifact to publish in the store tests: tensors, JSON, a subfolder."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from parammix_core.store import ArtifactRef, Store


def _artifact(store: Store, ref: ArtifactRef) -> Path:
    src = store.staging(ref)
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, src / "model.safetensors")
    (src / "info.json").write_text(json.dumps({"a": 1}))
    (src / "sub").mkdir()
    (src / "sub" / "notes.json").write_text("[1, 2]")
    return src
