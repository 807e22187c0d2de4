"""Training engines: how one optimisation step runs under the single loop in `train.py`.

`train()` owns the schedule, the batches and the checkpoint directory; an engine owns the
model's forward/backward, the optimizer and the weight/optimizer files of a checkpoint:

    PlainEngine      one process, torch AdamW (foreach on the CPU, or fused), optional bf16
                     autocast and torch.compile.
    DeepSpeedEngine  the same step as DeepSpeed ZeRO data parallelism (stages 0-3) over the
                     processes a launcher started (torchrun, the `deepspeed` launcher, or the
                     flow itself: `training.processes`), or one process without a launcher.

Both engines run *the same optimisation*, whatever the number of processes: every process
draws the same global batch from the same generator and trains on its contiguous slice
(gradients are averaged across processes, so the update is the full batch's), and reports the
global batch's mean loss. The optimizer is always a client `torch.optim.AdamW` with the same
two parameter groups, so DeepSpeed never JIT-compiles its FusedAdam. A DeepSpeed checkpoint
holds *consolidated* tensors in safetensors (full weights, full Adam moments by parameter
name), gathered from every process, so it resumes under another world size, and the weights
file is the same as the plain engine's. DeepSpeed's own checkpoint files are pickles; they are
never written or read here.

The package, by what each module holds: `base.py` (the `Engine` protocol, optimizer and
autocast both engines use), `plain.py`, `deepspeed_engine.py` (with the process group and
device it runs on) and `system.py` (`make_engine`, `system_spec`). Importing it never imports
deepspeed: only a DeepSpeedEngine does.
"""

from parammix_core.engines.base import Engine, autocast, make_optimizer, param_groups
from parammix_core.engines.deepspeed_engine import (
    ADAM_STATES,
    LAUNCHER_ENV,
    DeepSpeedEngine,
    init_distributed,
    micro_batch,
    process_device,
)
from parammix_core.engines.plain import PlainEngine
from parammix_core.engines.system import SYSTEM_FIELDS, make_engine, system_spec

__all__ = [
    "ADAM_STATES",
    "LAUNCHER_ENV",
    "SYSTEM_FIELDS",
    "DeepSpeedEngine",
    "Engine",
    "PlainEngine",
    "autocast",
    "init_distributed",
    "make_engine",
    "make_optimizer",
    "micro_batch",
    "param_groups",
    "process_device",
    "system_spec",
]
