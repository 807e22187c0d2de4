"""Linear merging of domain experts in parameter space.

    theta(alpha) = theta_base + sum_k alpha_k (theta_k - theta_base),   alpha on the simplex

Three ways to compute the same thing, for three jobs:

- `linear.py`, `linear_merge`: the reference, on state dicts, per tensor in float64.
- `in_memory.py`, `InMemoryMerger`: the hot path of the mixture fan-out; one `mv` per dtype
  rewrites the live model's flat parameter buffer.
- `streaming.py`, `streaming_merge`: a merged checkpoint on disk for models bigger than memory,
  slice by slice from safetensors inputs to HF-style shards (`safetensors_files.py`).
"""

from parammix_core.merge.in_memory import InMemoryMerger
from parammix_core.merge.linear import (
    MergeError,
    check_compatible,
    linear_merge,
    merge_tensor,
    task_vector,
)
from parammix_core.merge.safetensors_files import INDEX_NAME, SINGLE_NAME
from parammix_core.merge.streaming import streaming_merge

__all__ = [
    "INDEX_NAME",
    "SINGLE_NAME",
    "InMemoryMerger",
    "MergeError",
    "check_compatible",
    "linear_merge",
    "merge_tensor",
    "streaming_merge",
    "task_vector",
]
