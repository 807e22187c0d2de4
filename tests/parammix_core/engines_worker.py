"""One rank of the two-process DeepSpeed runs of test_engines.py (started by torchrun).

    python -m torch.distributed.run --standalone --nproc_per_node=2 engines_worker.py OUT

Trains the pico model of test_train.py on its corpus twice, as the tests' plain run does:
ZeRO-2 straight through, and ZeRO-3 crashing after step 5 and then resuming from its step-3
checkpoint in the same processes. Rank 0 saves each final model as a consolidated HF
checkpoint (OUT/zero2, OUT/zero3) and the runs' losses in OUT/results.json.
"""

import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402

from parammix_core.config import DeepSpeedConfig, TrainConfig, TrainingConfig  # noqa: E402
from parammix_core.model import save_model  # noqa: E402
from parammix_core.train import train  # noqa: E402
from tests.parammix_core.test_train import CPU, corpus, pico  # noqa: E402

CFG = TrainConfig(steps=8, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=3)


def run(out: Path, stage: int, crash_at: int | None = None) -> dict:
    system = TrainingConfig(engine="deepspeed", deepspeed=DeepSpeedConfig(zero_stage=stage))

    def crash(step, total, loss):
        if step == crash_at:
            raise RuntimeError("simulated crash")

    if crash_at is not None:
        try:
            train(pico(), corpus(), [0.6, 0.4], CFG, 3, out / "work", CPU, crash, system=system)
        except RuntimeError as e:
            assert "simulated crash" in str(e)
    model = pico()
    result = train(model, corpus(), [0.6, 0.4], CFG, 3, out / "work", CPU, system=system)
    if dist.get_rank() == 0:
        save_model(model, out)
    return {"losses": result.losses, "resumed_from": result.resumed_from}


def main(out: Path) -> None:
    results = {"zero2": run(out / "zero2", 2), "zero3": run(out / "zero3", 3, crash_at=5)}
    if dist.get_rank() == 0:
        results["world"] = dist.get_world_size()
        (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
