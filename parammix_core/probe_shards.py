"""The probe's vectors on disk: a safetensors file per g_k and H_k g_j, read a slice at a time.

Why files: K^2 vectors of P parameters do not fit in memory at scale, yet later stages need
them, not only their Gram matrix: `evaluation.proxy: corrected` adds Delta(alpha) = s * sum_kj
a_k a_j v_kj to each merge, and the proxy validation fits s against measured merge-vs-mix gaps
along d(alpha) = sum_kj a_k a_j v_kj. So the stage stores the vectors (nothing is recomputed)
and readers stream them: `summary` and `deltas` hold one slice of each of the K^2 vectors at
a time; `correction` fills the K(K-1) nonzero v_kj that the corrected proxy keeps beside the
merge (one `addmv` per candidate needs them resident), one slice at a time.

Layout of a probe folder (an artifact of the interference_probe stage):

    vectors.json             {"domains": [K names], "method": HVP kernel, "parameters": P}
    grads/{k}.safetensors    "grad" (P,): g_k
    hg/{k}-{j}.safetensors   "hg" (P,): H_k g_j, k and j domain indices

Parameters are flat, in `hvp.param_names` order. Slices are read with `safe_open`'s
`get_slice`, opening the file for each slice: safetensors maps the file, and every page read
through a mapping stays in the process's resident set until the file is closed.
"""

from __future__ import annotations

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

INDEX = "vectors.json"


def grad_name(k: int) -> str:
    return f"grads/{k}.safetensors"


def hg_name(k: int, j: int) -> str:
    return f"hg/{k}-{j}.safetensors"


class ShardWriter:
    """An `interference.VectorStore` writing one safetensors file per vector into `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        for sub in ("grads", "hg"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def put_grad(self, k: int, grad: Tensor) -> None:
        save_file({"grad": grad.cpu().contiguous()}, self.folder / grad_name(k))

    def grads(self, start: int, stop: int) -> Tensor:
        """(stop - start, P): g_start .. g_(stop - 1)."""
        return _stacked([self.folder / grad_name(k) for k in range(start, stop)], "grad")

    def put_hg(self, k: int, j: int, vector: Tensor) -> None:
        save_file({"hg": vector.cpu().contiguous()}, self.folder / hg_name(k, j))


def probe_to_shards(
    model: torch.nn.Module,
    batches: Mapping[str, Sequence[Tensor]],
    folder: Path,
    method: Method = "auto",
    chunk_size: int | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
) -> ProbeShards:
    """`interference.probe_vectors` into files in `folder`, each written once complete."""
    writer = ShardWriter(folder)
    ran = probe_vectors(model, batches, writer, method, chunk_size, progress, autocast)
    n_params = sum(p.numel() for p in model.parameters())
    index = {"domains": list(batches), "method": ran, "parameters": n_params}
    (writer.folder / INDEX).write_text(json.dumps(index))
    return ProbeShards(writer.folder)


class ProbeShards:
    """A probe folder (layout in the module docstring), checked on opening: every file there,
    every tensor of the right shape."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX).read_text())
            self.domains: list[str] = list(index["domains"])
            self.method: str = index["method"]
            self.n_params: int = int(index["parameters"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ProbeError(f"stored probe: no readable {self.folder / INDEX} ({err})") from None
        k = self.k
        names = [(grad_name(i), "grad") for i in range(k)]
        names += [(hg_name(i, j), "hg") for i in range(k) for j in range(k)]
        for rel, tensor in names:
            shape = _shape(self.folder / rel, tensor)
            if shape != (self.n_params,):
                raise ProbeError(
                    f"{self.folder / rel}: {tensor!r} has shape {shape}, the probe has "
                    f"{self.n_params} parameters"
                )

    @property
    def k(self) -> int:
        return len(self.domains)

    def grads(self) -> Tensor:
        """(K, P): every g_k, whole."""
        return _stacked([self.folder / grad_name(k) for k in range(self.k)], "grad")

    def hg(self, k: int, j: int) -> Tensor:
        """(P,): H_k g_j, whole."""
        with safe_open(self.folder / hg_name(k, j), framework="pt") as f:
            return f.get_tensor("hg")

    def chunks(self, length: int | None = None) -> Iterator[Chunk]:
        """(start, hg[:, :, start:start + length]) over the parameters, read slice by slice."""
        k = self.k
        length = length or chunk_length(k)
        paths = [self.folder / hg_name(i, j) for i in range(k) for j in range(k)]
        for start in range(0, self.n_params, length):
            stop = min(start + length, self.n_params)
            yield start, torch.stack([_read(p, "hg", start, stop) for p in paths]).view(k, k, -1)

    def summary(self, length: int | None = None) -> ProbeSummary:
        """Norms and Gram matrix (`interference.summarise`), in one pass over the files."""
        return summarise(self.chunks(length), self.k)

    def deltas(
        self, alphas: np.ndarray | Sequence, length: int | None = None, replay: float = 0.0
    ) -> Tensor:
        """(N, P) float32: d(alpha_n) = sum_kj a_k a_j v_kj (weights `outer_weights` with
        the experts' replay), unscaled, formed in float64."""
        k = self.k
        weights = torch.from_numpy(outer_weights(np.asarray(alphas), k, replay))  # (N, K^2)
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


def _read(path: Path, name: str, start: int, stop: int) -> Tensor:
    """tensor `name`[start:stop], the file open for this read only: safetensors maps it, and
    each page read stays in the resident set until the file is closed."""
    with safe_open(path, framework="pt") as f:
        return f.get_slice(name)[start:stop]


def _stacked(paths: Sequence[Path], name: str) -> Tensor:
    """(len(paths), P): tensor `name` (P,) of each file, filled in row by row (one extra (P,)
    tensor while reading, not a list and its stack)."""
    out: Tensor | None = None
    for n, path in enumerate(paths):
        with safe_open(path, framework="pt") as f:
            row = f.get_tensor(name)
        if out is None:
            out = row.new_empty(len(paths), row.numel())
        out[n] = row
        del row
    assert out is not None  # at least one file
    return out


def _shape(path: Path, name: str) -> tuple[int, ...]:
    """The shape of tensor `name` in a safetensors file, which must hold it."""
    try:
        with safe_open(path, framework="pt") as f:
            if name not in f.keys():  # noqa: SIM118 - a safe_open handle is no mapping
                raise ProbeError(f"{path}: no tensor {name!r} (has {sorted(f.keys())})")
            return tuple(f.get_slice(name).get_shape())
    except (SafetensorError, OSError) as err:
        raise ProbeError(f"stored probe: {path} is no readable safetensors ({err})") from None
