"""A noise variance per fidelity level: deterministic merges, noisy real runs."""

from __future__ import annotations

import numpy as np
import torch

from parammix_core.search.bayes import DTYPE
from parammix_core.search.level_noise import fit_levels_gp


def test_each_level_gets_its_own_noise():
    # merges on a smooth surface, real runs on the same surface plus run-to-run noise sd 0.02
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 45)
    y = -((x - np.array([0.6, 0.2, 0.2])) ** 2).sum(axis=1)
    y[30:] += rng.normal(0.0, 0.02, 15)
    inputs = torch.tensor(np.c_[x, np.r_[np.zeros(30), np.ones(15)]], dtype=DTYPE)
    torch.manual_seed(0)
    model = fit_levels_gp(inputs, torch.tensor(y, dtype=DTYPE)[:, None], (0.0, 1.0))
    merge_noise, run_noise = model.likelihood.noise_covar.noise.detach().numpy()
    assert run_noise > 10 * merge_noise, (merge_noise, run_noise)
    # each row's noise is its level's (the inputs' last column)
    noise = model.likelihood.noise_covar(inputs).diagonal().detach().numpy()
    np.testing.assert_allclose(noise, np.r_[np.full(30, merge_noise), np.full(15, run_noise)])
