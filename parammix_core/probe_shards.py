"""The probe's vectors on disk: one safetensors file per H_k g_j, read a parameter slice at a time.

Why files: K^2 vectors of P parameters do not fit in memory at scale, yet later stages need
them, not only their Gram matrix: `evaluation.proxy: corrected` adds Delta(alpha) = s * sum_kj
a_k a_j v_kj to each merge, and the proxy validation fits s against measured merge-vs-mix gaps
along d(alpha) = sum_kj a_k a_j v_kj. So the stage stores the vectors (nothing is recomputed)
and readers stream them: `summary` and `deltas` hold one slice of each of the K^2 vectors at
a time; `correction` fills the K(K-1) nonzero v_kj that the corrected proxy keeps beside the
merge (one `addmv` per candidate needs them resident), one slice at a time.

Layout of a probe folder (an artifact of the interference_probe stage):

    grads.safetensors        "grads" (K, P): g_k; metadata "domains" (JSON list), "method"
    hg/{k}-{j}.safetensors   "hg" (P,): H_k g_j, k and j domain indices

Parameters are flat, in `hvp.param_names` order. Slices are read with `safe_open`'s
`get_slice`, which copies just the slice (the file is not mapped into the resident set).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from parammix_core.hvp import Method
from parammix_core.interference import (
    Chunk,
    ProbeError,
    ProbeSummary,
    Progress,
    chunk_length,
    off_diagonal,
    outer_weights,
    probe_vectors,
    summarise,
    v_of,
)

GRADS = "grads.safetensors"


def hg_name(k: int, j: int) -> str:
    return f"hg/{k}-{j}.safetensors"


def probe_to_shards(
    model: torch.nn.Module,
    batches: Mapping[str, Sequence[Tensor]],
    folder: Path,
    method: Method = "auto",
    chunk_size: int | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
) -> ProbeShards:
    """`interference.probe_vectors`, each H_k g_j written to `folder` as soon as it is complete."""
    folder = Path(folder)
    (folder / "hg").mkdir(parents=True, exist_ok=True)

    def write(k: int, j: int, vector: Tensor) -> None:
        save_file({"hg": vector.cpu().contiguous()}, folder / hg_name(k, j))

    grads, ran = probe_vectors(model, batches, write, method, chunk_size, progress, autocast)
    meta = {"domains": json.dumps(list(batches)), "method": ran}
    save_file({"grads": grads.cpu().contiguous()}, folder / GRADS, metadata=meta)
    return ProbeShards(folder)


class ProbeShards:
    """A probe folder (layout in the module docstring), checked on opening: every file there,
    every tensor of the right shape."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        meta, (k, self.n_params) = _header(self.folder / GRADS, "grads", 2)
        try:
            self.domains: list[str] = json.loads(meta["domains"])
            self.method: str = meta["method"]
        except (KeyError, TypeError, ValueError):
            raise ProbeError(f"{self.folder / GRADS}: no domains/method metadata") from None
        if len(self.domains) != k:
            raise ProbeError(f"{self.folder / GRADS}: {k} gradients for domains {self.domains}")
        for i in range(k):
            for j in range(k):
                _, shape = _header(self.folder / hg_name(i, j), "hg", 1)
                if shape != (self.n_params,):
                    raise ProbeError(
                        f"{self.folder / hg_name(i, j)}: 'hg' has shape {shape}, the gradients "
                        f"have {self.n_params} parameters"
                    )

    @property
    def k(self) -> int:
        return len(self.domains)

    def grads(self) -> Tensor:
        """(K, P): every g_k, whole."""
        with safe_open(self.folder / GRADS, framework="pt") as f:
            return f.get_tensor("grads")

    def hg(self, k: int, j: int) -> Tensor:
        """(P,): H_k g_j, whole."""
        with safe_open(self.folder / hg_name(k, j), framework="pt") as f:
            return f.get_tensor("hg")

    def chunks(self, length: int | None = None) -> Iterator[Chunk]:
        """(start, hg[:, :, start:start + length]) over the parameters, read slice by slice."""
        k = self.k
        length = length or chunk_length(k)
        paths = [self.folder / hg_name(i, j) for i in range(k) for j in range(k)]
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(safe_open(p, framework="pt")) for p in paths]
            slices = [f.get_slice("hg") for f in files]
            for start in range(0, self.n_params, length):
                stop = min(start + length, self.n_params)
                yield start, torch.stack([s[start:stop] for s in slices]).view(k, k, -1)

    def summary(self, length: int | None = None) -> ProbeSummary:
        """Norms and Gram matrix (`interference.summarise`), in one pass over the files."""
        return summarise(self.chunks(length), self.k)

    def deltas(self, alphas: np.ndarray | Sequence, length: int | None = None) -> Tensor:
        """(N, P) float32: d(alpha_n) = sum_kj a_k a_j v_kj, unscaled, formed in float64."""
        k = self.k
        weights = torch.from_numpy(outer_weights(np.asarray(alphas), k))  # (N, K^2)
        out = torch.empty(len(weights), self.n_params)
        for start, hg in self.chunks(length):
            v = v_of(hg).reshape(k * k, -1).double()  # (K^2, n)
            out[:, start : start + v.shape[1]] = weights @ v
        return out

    def correction(
        self, dtype: torch.dtype, device: torch.device | str, length: int | None = None
    ) -> Tensor:
        """(K(K-1), P): the v_kj, k != j, in `interference.off_diagonal` order, in `dtype` on
        `device`: the directions `InMemoryMerger.set_correction` takes for the corrected
        proxy (weights `interference.pair_weights`)."""
        rows, cols = (list(index) for index in zip(*off_diagonal(self.k), strict=True))
        out = torch.empty(len(rows), self.n_params, dtype=dtype, device=device)
        for start, hg in self.chunks(length):
            out[:, start : start + hg.shape[-1]] = v_of(hg)[rows, cols]
        return out


def _header(path: Path, name: str, ndim: int) -> tuple[dict[str, str], tuple[int, ...]]:
    """(metadata, shape of tensor `name`) of a safetensors file, which must hold it."""
    try:
        with safe_open(path, framework="pt") as f:
            if name not in f.keys():  # noqa: SIM118 - a safe_open handle is no mapping
                raise ProbeError(f"{path}: no tensor {name!r} (has {sorted(f.keys())})")
            shape = tuple(f.get_slice(name).get_shape())
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ProbeError(f"stored probe: {path} is no readable safetensors ({err})") from None
    if len(shape) != ndim:
        raise ProbeError(f"{path}: {name!r} has shape {shape}, expected {ndim} dimension(s)")
    return meta, shape
