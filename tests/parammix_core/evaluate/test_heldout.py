"""heldout_loss against models whose next-token distribution is known in closed form."""

import math
from types import SimpleNamespace

import pytest
import torch

from parammix_core.evaluate import HeldoutError, heldout_loss

VOCAB = 16


class TableLM(torch.nn.Module):
    """Logits depend only on the current token: row `table[x_t]` predicts x_{t+1}."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)  # (V, V)
        self.config = SimpleNamespace(vocab_size=table.shape[0])

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[input_ids])  # (B, T, V)


def test_uniform_logits_give_log_vocab():
    blocks = torch.randint(0, VOCAB, (7, 9), generator=torch.Generator().manual_seed(0))
    loss, stderr = heldout_loss(TableLM(torch.zeros(VOCAB, VOCAB)), blocks, 3, "cpu")
    assert loss == pytest.approx(math.log(VOCAB), abs=1e-6)
    assert stderr == pytest.approx(0.0, abs=1e-6)


def test_known_losses_mean_and_stderr_over_blocks():
    table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1))
    blocks = torch.randint(0, VOCAB, (5, 6), generator=torch.Generator().manual_seed(2))
    log_p = torch.log_softmax(table.double(), dim=-1)
    per_block = torch.tensor(
        [-sum(log_p[b[t], b[t + 1]] for t in range(5)) / 5 for b in blocks.tolist()]
    )
    loss, stderr = heldout_loss(TableLM(table), blocks, 2, "cpu")  # batches of 2, 2, 1
    assert loss == pytest.approx(per_block.mean().item(), rel=1e-5)
    assert stderr == pytest.approx((per_block.std() / math.sqrt(5)).item(), rel=1e-4)


def test_single_block_has_no_stderr_and_model_mode_is_restored():
    model = TableLM(torch.zeros(VOCAB, VOCAB)).train()
    loss, stderr = heldout_loss(model, torch.arange(8).view(1, 8), 4, "cpu")
    assert loss == pytest.approx(math.log(VOCAB), abs=1e-6)
    assert math.isnan(stderr)
    assert model.training


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (torch.arange(8), r"must be \(N>=1, T>=2\), got \(8,\)"),
        (torch.zeros(3, 1, dtype=torch.long), r"got \(3, 1\)"),
        (torch.zeros(2, 4), "integer token ids, got torch.float32"),
        (torch.full((2, 4), VOCAB), rf"span \[{VOCAB}, {VOCAB}\], outside the model's vocabulary"),
    ],
)
def test_bad_blocks_are_named(blocks, message):
    with pytest.raises(HeldoutError, match=message):
        heldout_loss(TableLM(torch.zeros(VOCAB, VOCAB)), blocks, 2, "cpu")
