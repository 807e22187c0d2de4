"""The reference math: task vectors, linear merges and their checks."""

import numpy as np
import pytest
import torch

from parammix_core.merge import MergeError, check_compatible, linear_merge, task_vector
from parammix_core.simplex import SimplexError


def hand_example():
    base = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5])}
    e1 = {"w": torch.tensor([[2.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([1.5])}
    e2 = {"w": torch.tensor([[1.0, 4.0], [3.0, 0.0]]), "b": torch.tensor([0.5])}
    return base, [e1, e2]


def test_linear_merge_by_hand():
    base, (e1, e2) = hand_example()
    assert torch.equal(linear_merge(base, [e1, e2], [1, 0])["w"], e1["w"])
    assert torch.equal(linear_merge(base, [e1, e2], [0, 1])["b"], e2["b"])
    mean = linear_merge(base, [e1, e2], [0.5, 0.5])
    assert torch.equal(mean["w"], torch.tensor([[1.5, 3.0], [3.0, 2.0]]))
    assert torch.equal(mean["b"], torch.tensor([1.0]))
    # base + 0.25 (e1 - base) + 0.75 (e2 - base)
    mixed = linear_merge(base, [e1, e2], [0.25, 0.75])
    assert torch.equal(mixed["w"], torch.tensor([[1.25, 3.5], [3.0, 1.0]]))
    assert torch.equal(mixed["b"], torch.tensor([0.75]))
    # an extrapolation (replay experts' merge weights): base + 1.5 (e1 - base) - 0.5 (e2 - base)
    past = linear_merge(base, [e1, e2], [1.5, -0.5])
    assert torch.equal(past["w"], torch.tensor([[2.5, 1.0], [3.0, 6.0]]))
    assert torch.equal(past["b"], torch.tensor([2.0]))


def test_task_vector_by_hand():
    base, (e1, _) = hand_example()
    tv = task_vector(base, e1)
    assert torch.equal(tv["w"], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(tv["b"], torch.tensor([1.0]))
    half = {k: v.to(torch.bfloat16) for k, v in base.items()}
    assert task_vector(half, half)["w"].dtype == torch.float32


def test_vertices_give_experts_back_exactly_and_uniform_gives_the_mean(states):
    base, experts = states
    for k, expert in enumerate(experts):
        merged = linear_merge(base, experts, np.eye(3)[k])
        assert all(torch.equal(merged[n], expert[n]) for n in base)
    uniform = linear_merge(base, experts, [1 / 3] * 3)
    for n in base:
        mean = torch.stack([e[n].double() for e in experts]).mean(0)
        torch.testing.assert_close(uniform[n].double(), mean, rtol=0, atol=1e-6)
        assert uniform[n].dtype == base[n].dtype


def test_merge_keeps_dtype_and_copies_equal_integer_tensors():
    base = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "i": torch.tensor([3, 4])}
    expert = {"w": torch.tensor([3.0, 2.0], dtype=torch.bfloat16), "i": torch.tensor([3, 4])}
    merged = linear_merge(base, [expert, base], [0.5, 0.5])
    assert merged["w"].dtype == torch.bfloat16
    assert torch.equal(merged["w"].float(), torch.tensor([2.0, 2.0]))
    assert torch.equal(merged["i"], base["i"])
    with pytest.raises(MergeError, match=r"tensor 'i'.*differs between the base and expert 0"):
        linear_merge(base, [{**expert, "i": torch.tensor([3, 5])}], [1.0])


def test_weights_must_sum_to_one(states):
    base, experts = states
    with pytest.raises(SimplexError, match=r"sum to 1\.1"):
        linear_merge(base, experts, [0.5, 0.3, 0.3])
    with pytest.raises(SimplexError, match=r"not finite for domain\(s\) \['expert 0'\]"):
        linear_merge(base, experts, [float("nan"), 0.5, 0.5])
    with pytest.raises(SimplexError, match="2 weight"):
        linear_merge(base, experts, [0.5, 0.5])


def test_compatibility_errors_name_expert_and_tensor():
    base, (e1, _) = hand_example()
    with pytest.raises(MergeError, match=r"code: missing tensor\(s\) 'b'"):
        check_compatible(base, {"w": e1["w"]}, "code")
    with pytest.raises(MergeError, match=r"code: tensor\(s\) not in the base: 'extra'"):
        check_compatible(base, {**e1, "extra": e1["b"]}, "code")
    with pytest.raises(
        MergeError, match=r"math: tensor 'w' has shape \[4\], the base has \[2, 2\]"
    ):
        check_compatible(base, {**e1, "w": e1["w"].reshape(4)}, "math")
    with pytest.raises(MergeError, match="web: tensor 'b' has dtype float16, the base has float32"):
        check_compatible(base, {**e1, "b": e1["b"].half()}, "web")
    check_compatible(base, e1, "fine")
