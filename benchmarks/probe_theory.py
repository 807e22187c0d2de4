"""How well the probe's second-order prediction of theta_mix - theta_merge holds, and how far it
degrades with more steps, larger steps, and Adam.

A pico Llama in float64, K=3 domains with one fixed batch each (overlapping token ranges), full
batch training from the same base: one expert per domain on L_k, and for each mixture a, a
mixed run on sum_k a_k L_k. The measured Delta = theta_mix - theta_merge(a) is compared with
predicted_delta(a, v, step_scale(lr, T)) from the probe at the base. For plain gradient descent
the expansion holds to second order (remainder ~ lr T ||H||); Adam rescales every coordinate,
so its norm ratio says how far off the GD step scale is and its cosine whether the direction
survives. Columns: mean/min cosine and mean norm ratio |pred|/|meas| over the mixtures, and
|Delta| / |theta_mix - theta_0| (how big the merge-vs-mix gap is against the whole update).

    python benchmarks/probe_theory.py
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from parammix_core.config import ModelConfig
from parammix_core.hvp import flat_params
from parammix_core.interference import predicted_delta, probe, step_scale
from parammix_core.model import build_model

PICO = ModelConfig(hidden_size=16, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=32)
VOCAB = 24
RANGES = [(3, 10), (8, 17), (15, 24)]
MIXTURES = [np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5]), np.full(3, 1 / 3)]
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def train(base: torch.nn.Module, batches, weights, optimizer: str, lr: float, steps: int):
    """Full-batch training on sum_k w_k L_k from `base`; returns the flat weights (P,)."""
    model = copy.deepcopy(base)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = sum(
            w * model(input_ids=b, labels=b, use_cache=False).loss
            for w, b in zip(weights, batches, strict=True)
            if w
        )
        loss.backward()
        opt.step()
    return flat_params(model)


def main() -> None:
    torch.set_num_threads(1)
    base = build_model(PICO, VOCAB, 16, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    base = base.double()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(lo, hi, (4, 8), generator=gen) for lo, hi in RANGES]  # (4, 8) each
    result = probe(base, {f"d{k}": [b] for k, b in enumerate(batches)})
    v = result.v()  # (K, K, P)
    theta0 = flat_params(base)
    mixtures = [m.round(3).tolist() for m in MIXTURES]
    print(
        f"torch {torch.__version__}; pico Llama float64, {theta0.numel()} params, K=3, "
        f"batch 4 x 8 per domain, HVP {result.method}; mixtures {mixtures}"
    )
    header = f"{'optimizer':<10}{'lr':>8}{'T':>5}{'cos mean':>10}{'cos min':>10}"
    print(header + f"{'|pred|/|meas|':>15}{'|Delta|/|update|':>18}")
    for optimizer in OPTIMIZERS:
        for lr in (1e-3, 1e-2):
            for steps in (2, 5, 10, 20):
                experts = [
                    train(base, batches, np.eye(3)[k], optimizer, lr, steps) for k in range(3)
                ]
                cosines, ratios, gaps = [], [], []
                for a in MIXTURES:
                    mix = train(base, batches, a, optimizer, lr, steps)
                    merge = theta0 + sum(a[k] * (experts[k] - theta0) for k in range(3))
                    measured = mix - merge  # (P,)
                    predicted = predicted_delta(a, v, step_scale(lr, steps))  # (P,)
                    cosines.append(
                        float(measured @ predicted / (measured.norm() * predicted.norm()))
                    )
                    ratios.append(float(predicted.norm() / measured.norm()))
                    gaps.append(float(measured.norm() / (mix - theta0).norm()))
                print(
                    f"{optimizer:<10}{lr:>8.0e}{steps:>5}{np.mean(cosines):>10.4f}"
                    f"{np.min(cosines):>10.4f}{np.mean(ratios):>15.3f}{np.mean(gaps):>18.2e}"
                )


if __name__ == "__main__":
    main()
