"""Do experts that keep a little of every domain merge more like real mixed runs?

    python benchmarks/replay_experts.py --store /tmp/run/store --set seed=0 --replay 0.1 0.25

The linear merge of a mixture heavy in sft or math loses far more of the language group than
the real run of that mixture does (benchmarks/RESULTS.md, "Merges that rank the utility
better"): each expert trains on its domain alone and drifts away from the others, and the
merge adds those drifts where a mixed run, seeing every domain in its batches, does not. This
script trains each expert again from the store's base with the expert's own settings and seed
on the mixture (1 - r) e_k + r u (u uniform: a replay share r of every domain), then merges
the validation's mixtures alpha at the weights w = (alpha - r u) / (1 - r), whose data mixture
(1 - r) w + r u is alpha itself (a weight below zero where alpha_k < r / K: the merge is
sum_k w_k theta_k, extrapolated), scores them with the run's own evaluation and prints the
Spearman against the real runs as `merge_rankings.py` does, saving them in its format for its
`--summary`. The retrained experts' checkpoints go under the store's `_work` folder (stage
`bench-replay`), so a second run reuses them. Results: benchmarks/RESULTS.md, "Experts with a
replay of every domain".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from adam_merge import ValidationRun, load_validation_run, refs  # noqa: E402
from merge_rankings import State, score, spearmans  # noqa: E402

from parammix_core import stages  # noqa: E402
from parammix_core.merge.replay import expert_mixtures, merge_weights  # noqa: E402
from parammix_core.stages.common import train_from_base  # noqa: E402
from parammix_core.stages.experts import expert_ref  # noqa: E402
from parammix_core.store import ArtifactRef  # noqa: E402


def replay_experts(run: ValidationRun, rate: float) -> list[State]:
    """Every expert trained again on (1 - rate) of its domain and rate of the uniform mix."""
    exp = run.exp
    store = stages.open_store(exp)
    (data,) = refs(store, "data").values()
    (base,) = refs(store, "base").values()
    k = len(exp.domains)
    states = []
    for i, domain in enumerate(exp.domains):
        expert = expert_ref(exp, domain, data, base)
        ref = ArtifactRef.for_spec("bench-replay", domain, {"expert": expert.key, "replay": rate})
        weights = expert_mixtures(k, rate)[i].tolist()
        model, _, result = train_from_base(
            exp, store, ref, data, base, weights, exp.training.expert, exp.seed, None, domain
        )
        print(f"{domain} replay {rate}: final loss {result.final_loss:.4f}", flush=True)
        states.append({n: p.detach().float().clone() for n, p in model.named_parameters()})
    return states


def extrapolated_merge(base: State, states: list[State], w: np.ndarray) -> State:
    """sum_k w_k theta_k for weights summing to 1, some possibly below zero."""
    return {
        n: b + sum(wk * (s[n] - b) for wk, s in zip(w, states, strict=True))
        for n, b in base.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="a local store with a validation")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    p.add_argument("--set", action="append", default=[], help="the run's --set overrides")
    p.add_argument("--replay", type=float, nargs="+", default=[0.1, 0.25])
    p.add_argument("--out", help="where to save this store's Spearmans (JSON)")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = load_validation_run(args.store, args.config, args.set)
    result = {"store": args.store, "rho": {}}
    for rate in args.replay:
        states = replay_experts(run, rate)
        rho = spearmans(
            run,
            score(
                run,
                lambda a, s=states, r=rate: extrapolated_merge(run.base, s, merge_weights(a, r)),
            ),
        )
        result["rho"][f"replay {rate:g}"] = rho
        print(f"replay {rate:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in rho.items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
