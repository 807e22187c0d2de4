import numpy as np
import pytest
import torch

from parammix_core import blending
from parammix_core.blending import BlendedSampler, block_indices, row_domains

MIXTURES = [[0.25, 0.25, 0.25, 0.25], [0.7, 0.2, 0.05, 0.05], [0.02, 0.9, 0.03, 0.05]]


@pytest.mark.parametrize("alpha", MIXTURES)
def test_every_batch_holds_the_mixture_to_within_two_rows(alpha):
    a = np.array(alpha)
    domains = row_domains(a, 0.37, 0, 16 * 500)
    counts = np.stack([np.bincount(b, minlength=4) for b in domains.reshape(500, 16)])  # (500, 4)
    assert np.abs(counts - 16 * a).max() <= 2
    # the whole run: iid draws would miss by sqrt(n a (1 - a)), up to 39 rows here
    assert np.abs(np.bincount(domains, minlength=4) - 8000 * a).max() <= 3


def test_zero_weights_get_no_rows_even_last_and_after_rounding():
    a = np.array([0.1, 0.0, 0.2, 0.7 - 1e-17, 0.0])
    domains = row_domains(a, 0.999999, 0, 20000)
    assert set(np.unique(domains)) == {0, 2, 3}


@pytest.mark.parametrize("size", [1, 2, 7, 3125])
def test_each_epoch_reads_every_block_once(size):
    j = np.arange(3 * size)
    blocks = block_indices(j, size, seed=4, domain=1)
    epochs = blocks.reshape(3, size)
    for e in epochs:
        assert sorted(e.tolist()) == list(range(size))
    if size > 2:  # the epochs' orders differ, and so do domains and seeds
        assert not np.array_equal(epochs[0], epochs[1])
        assert not np.array_equal(blocks, block_indices(j, size, seed=4, domain=2))
        assert not np.array_equal(blocks, block_indices(j, size, seed=5, domain=1))


def corpus() -> list[torch.Tensor]:
    return [torch.arange(n)[:, None] + 1000 * k for k, n in enumerate([9, 5, 12])]  # (N_k, 1)


def test_a_sampler_started_mid_run_continues_the_run(monkeypatch):
    monkeypatch.setattr(blending, "_CHUNK", 7)  # counting the earlier rows takes several passes
    weights = [0.5, 0.2, 0.3]
    whole = BlendedSampler([9, 5, 12], weights, seed=3)
    rows = torch.cat([whole.batch(corpus(), 6) for _ in range(10)])  # (60, 1)
    late = BlendedSampler([9, 5, 12], weights, seed=3, start_row=24)
    assert torch.equal(torch.cat([late.batch(corpus(), 6) for _ in range(6)]), rows[24:])


def test_rows_follow_the_weights_without_replacement():
    sampler = BlendedSampler([9, 5, 12], [0.5, 0.2, 0.3], seed=0)
    rows = torch.cat([sampler.batch(corpus(), 6) for _ in range(3)]).flatten()  # (18,)
    domains, blocks = rows // 1000, rows % 1000
    counts = np.bincount(domains.numpy(), minlength=3)
    assert np.abs(counts - 18 * np.array([0.5, 0.2, 0.3])).max() <= 1
    for k, n in enumerate([9, 5, 12]):
        seen = blocks[domains == k].tolist()
        assert len(set(seen)) == len(seen) and max(seen) < n  # no block twice within an epoch
    other = BlendedSampler([9, 5, 12], [0.5, 0.2, 0.3], seed=1)
    assert not torch.equal(torch.cat([other.batch(corpus(), 6) for _ in range(3)]).flatten(), rows)
