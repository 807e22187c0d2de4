"""`DeepSpeedEngine`: ZeRO data parallelism, with the process group and device it runs on."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
from datetime import timedelta
from pathlib import Path

import safetensors.torch
import torch
from safetensors import safe_open

from parammix_core.config import TrainConfig, TrainingConfig
from parammix_core.engines.base import autocast, make_optimizer
from parammix_core.objective import training_inputs

ADAM_STATES = ("exp_avg", "exp_avg_sq")
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def process_device(system: TrainingConfig, device: torch.device) -> torch.device:
    """This process's device: under DeepSpeed on GPUs, the one its LOCAL_RANK names."""
    if system.engine == "deepspeed" and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def micro_batch(batch_size: int, world: int) -> int:
    """Rows per process: the global batch split evenly, so the update is the same as one."""
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {world} processes; "
            "choose a multiple of the world size"
        )
    return batch_size // world


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_shm_comm_op() -> None:
    """Keep DeepSpeed's CPU backend from JIT-compiling its shared-memory all-reduce (~150 s).

    DeepSpeed 0.19.8 builds that C++ op whenever its torch backend starts on the CPU, but only
    `inference_all_reduce` uses it; training collectives go through torch.distributed (gloo).
    Marking the op incompatible in DeepSpeed's probe table (one module-level dict, cached so
    that edits to it persist, as its comment says) makes the backend skip the build. The
    version is pinned by the `deepspeed` extra.
    """
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


_INIT_LOCK = threading.Lock()


def init_distributed(device: torch.device) -> None:
    """torch.distributed (gloo on CPU, nccl on CUDA), then DeepSpeed's backend on top of it.

    Under a launcher (torchrun, `deepspeed`) the variables in LAUNCHER_ENV say where the group
    is; without them this process becomes a group of one on a free local port and sets them.
    The group lives as long as the process: DeepSpeed keeps a reference to it. Runs in threads
    of one process (the flow's task runner) initialise under a lock: once, and DeepSpeed's op
    probe, which swaps file descriptor 2 while it test-compiles, never runs twice at once.
    """
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    with _INIT_LOCK:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            timeout = timedelta(minutes=30)
            if not all(k in os.environ for k in LAUNCHER_ENV):
                # no launcher: be a group of one, with the variables a launcher would have
                # set (DeepSpeed reads LOCAL_RANK itself)
                single = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
                os.environ.update({**single, "MASTER_ADDR": "127.0.0.1"})
                os.environ["MASTER_PORT"] = str(_free_port())
            dist.init_process_group(backend, timeout=timeout)
        if get_accelerator().device_name() == "cpu":
            _skip_shm_comm_op()
        deepspeed.init_distributed(dist_backend=dist.get_backend(), verbose=False)


class DeepSpeedEngine:
    """ZeRO data parallelism with a client torch AdamW; fp32 weights and communication.

    ZeRO-3 partitions the module's parameters in place, so the engine trains a copy and
    `finish()` copies the gathered weights back into the caller's model (on the host meanwhile).
    """

    def __init__(
        self, model: torch.nn.Module, cfg: TrainConfig, system: TrainingConfig, device: torch.device
    ):
        try:
            import deepspeed
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "training.engine 'deepspeed' needs the deepspeed extra: "
                "pip install 'parammix[deepspeed]'"
            ) from e
        import torch.distributed as dist

        device = process_device(system, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        init_distributed(device)
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.micro = micro_batch(cfg.batch_size, self.world)
        self.cfg, self.system, self.stage = cfg, system, system.deepspeed.zero_stage
        self.is_writer = self.rank == 0
        self.caller_model = model
        if self.stage == 3:  # train a copy; the caller's model waits on the host
            self.caller_device = next(model.parameters()).device
            model = copy.deepcopy(model.to("cpu"))
        model.to(device)
        self.engine, self.opt, _, _ = deepspeed.initialize(
            model=model,
            optimizer=make_optimizer(model, cfg, device, fused=system.fused_adamw),
            config=self.ds_config(),
        )
        self.device = self.engine.device
        if system.compile:
            self.engine.compile()

    def ds_config(self) -> dict:
        ds = self.system.deepspeed
        zero: dict = {"stage": self.stage}
        if self.stage > 0:
            zero["overlap_comm"] = ds.overlap_comm
            zero["reduce_bucket_size"] = ds.bucket_size
        if self.stage in (1, 2):
            zero["allgather_bucket_size"] = ds.bucket_size
        if self.stage == 3:
            # Else ZeRO-3 replaces torch.nn.functional.linear for the whole process, for good:
            # a later forward-mode HVP (the interference probe) then fails on its custom
            # autograd.Function.
            zero["memory_efficient_linear"] = False
        if ds.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        if ds.offload_param:
            zero["offload_param"] = {"device": "cpu"}
        return {
            "train_batch_size": self.cfg.batch_size,
            "train_micro_batch_size_per_gpu": self.micro,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.cfg.grad_clip,
            "zero_optimization": zero,
            # a client torch AdamW: no FusedAdam build; DeepSpeed only shards its state. With
            # offload, torch's AdamW also steps the host shards (DeepSpeedCPUAdam would be
            # faster there, but is a C++ op compiled at first use).
            "zero_allow_untested_optimizer": True,
            "zero_force_ds_cpu_optimizer": False,
            "steps_per_print": 2**31 - 1,
        }

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        """The client AdamW; under ZeRO its parameters are this process's flat fp32 shards."""
        return getattr(self.opt, "optimizer", self.opt) if self.stage > 0 else self.opt

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def train_step(self, batch: torch.Tensor) -> float:
        import torch.distributed as dist

        rows = batch[self.rank * self.micro : (self.rank + 1) * self.micro]  # (B / world, T)
        rows = rows.to(device=self.device, dtype=torch.long)
        with autocast(self.system, self.device):
            loss = self.engine(**training_inputs(self.module, rows)).loss  # MoE: LM + aux
        self.engine.backward(loss)
        self.engine.step()
        mean = loss.detach().float().clone()
        dist.all_reduce(mean)  # equal slices, so the mean of means is the batch mean
        return mean.item() / self.world

    # checkpoints: full tensors by parameter name, gathered across processes

    def _full(self, param: torch.nn.Parameter, key: str | None) -> torch.Tensor:
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        if self.stage == 0:
            value = param if key is None else self._torch_optimizer().state[param][key]
        elif key is None:
            value = safe_get_full_fp32_param(param)
        else:
            value = safe_get_full_optimizer_state(param, key)
        return value.detach().to("cpu", torch.float32).clone()

    def _link_optimizer_fragments(self) -> None:
        """Point every parameter's ZeRO-1/2 fragment at its Adam state (all param groups).

        DeepSpeed 0.19.8 links them once, right after the *first* group's first step, when
        later groups have no state yet, so the fragment API finds no moments for our second
        group (norm gains). Linking again once every group has stepped fixes that; stage 3
        reads the state directly and needs nothing.
        """
        if self.stage in (1, 2):
            self.opt._hp_optimizer_states_linked = False
            self.opt._lazy_init_hp_params_optimizer_state()

    def _step_count(self) -> int:
        states = list(self._torch_optimizer().state.values())
        return int(states[0]["step"]) if states else 0

    def save(self, out_dir: Path) -> None:
        weights = {n: b.detach().to("cpu").clone() for n, b in self.module.named_buffers()}
        weights = {n: weights[n] for n in self.module.state_dict() if n in weights}
        moments = {}
        self._link_optimizer_fragments()
        for name, p in self.module.named_parameters():  # collective: every process gathers
            weights[name] = self._full(p, None)
            for key in ADAM_STATES:
                moments[f"{name}.{key}"] = self._full(p, key)
        if self.is_writer:
            meta = {
                "step": self._step_count(),
                "zero_stage": self.stage,
                "world": self.world,
                "optimizer": type(self.opt).__name__,  # DeepSpeed's wrapper, for the record
            }
            safetensors.torch.save_file(weights, out_dir / "model.safetensors")
            safetensors.torch.save_file(
                moments, out_dir / "optimizer.safetensors", metadata={"deepspeed": json.dumps(meta)}
            )

    def load_optimizer(self, ckpt_dir: Path) -> None:
        """Adam moments and step count from a checkpoint (the weights were loaded before).

        Adam creates its state at the first step, so one step with lr 0 creates it first:
        AdamW with lr 0 leaves the weights bit-identical (decay factor 1, update scaled by 0).
        """
        from deepspeed.utils import safe_set_full_optimizer_state

        path = ckpt_dir / "optimizer.safetensors"
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            if not meta or "deepspeed" not in meta:
                raise ValueError(f"{path}: not written by the deepspeed engine")
            moments = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        step = json.loads(meta["deepspeed"])["step"]
        lrs = [g["lr"] for g in self.opt.param_groups]
        self.set_lr(0.0)
        with torch.random.fork_rng(devices=[]):
            self.train_step(torch.zeros(self.cfg.batch_size, 8, dtype=torch.long))
        for group, lr in zip(self.opt.param_groups, lrs, strict=True):
            group["lr"] = lr
        opt = self._torch_optimizer()
        self._link_optimizer_fragments()
        for name, p in self.module.named_parameters():
            for key in ADAM_STATES:
                value = moments[f"{name}.{key}"].to(self.device)
                if self.stage == 0:
                    opt.state[p][key].copy_(value)
                else:
                    safe_set_full_optimizer_state(p, value, key)
        for state in opt.state.values():
            state["step"].fill_(step)

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: self._full(p, None) for n, p in self.module.named_parameters()}

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def finish(self) -> None:
        """Full weights in the caller's model; DeepSpeed's hooks removed from its parameters."""
        if self.stage == 3:
            full = {n: b.detach().to("cpu") for n, b in self.module.named_buffers()}
            full.update({n: self._full(p, None) for n, p in self.module.named_parameters()})
            self.caller_model.load_state_dict(
                {n: full[n] for n in self.caller_model.state_dict()}, strict=True
            )
            self.caller_model.to(self.caller_device)
        self.engine.destroy()
