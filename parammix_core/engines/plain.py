"""`PlainEngine`: one process, torch AdamW, optional bf16 autocast and torch.compile."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch
from safetensors import safe_open

from parammix_core.config import TrainConfig, TrainingConfig
from parammix_core.engines.base import autocast, make_optimizer
from parammix_core.objective import training_inputs


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten the optimizer state: tensors as 'param_index.name', the rest as JSON."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


class PlainEngine:
    """One process: the loop nanoGPT has (forward, backward, clip, step, zero_grad)."""

    is_writer = True

    def __init__(
        self, model: torch.nn.Module, cfg: TrainConfig, system: TrainingConfig, device: torch.device
    ):
        self.model, self.cfg, self.system, self.device = model, cfg, system, device
        self.opt = make_optimizer(model, cfg, device, fused=system.fused_adamw)
        # the compiled wrapper shares the parameters; checkpoints still name them as `model`
        self.forward = torch.compile(model) if system.compile else model

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train_step(self, batch: torch.Tensor) -> float:
        batch = batch.to(device=self.device, dtype=torch.long)  # (B, T)
        with autocast(self.system, self.device):
            loss = self.forward(**training_inputs(self.model, batch)).loss  # MoE: LM + aux
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()  # .item() syncs with the device once per step

    def save(self, out_dir: Path) -> None:
        safetensors.torch.save_model(self.model, str(out_dir / "model.safetensors"))
        tensors, meta = _optimizer_tensors(self.opt)
        safetensors.torch.save_file(
            tensors, out_dir / "optimizer.safetensors", metadata={"optimizer": json.dumps(meta)}
        )

    def load_optimizer(self, ckpt_dir: Path) -> None:
        with safe_open(ckpt_dir / "optimizer.safetensors", framework="pt") as f:
            meta = json.loads(f.metadata()["optimizer"])
            state: dict[int, dict] = {}
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                index, key = name.split(".", 1)
                state.setdefault(int(index), {})[key] = f.get_tensor(name)
        for name, value in meta["scalars"].items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = value
        self.opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_parameters())

    def barrier(self) -> None:
        pass

    def finish(self) -> None:
        pass
