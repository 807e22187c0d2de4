"""The interference probe: why a merge of experts differs from training on the mixed data.

Second-order expansion of T steps of gradient descent with steps eta_t from the base theta_0
(see DESIGN.md, "The second-order analysis"), with g_k and H_k the gradient and Hessian of
domain k's loss at theta_0 and sum_k a_k = 1:

    Delta(a) = theta_mix - theta_merge(a) ~ s * sum_{k,j} a_k a_j v_kj,
    v_kj = H_k g_j - H_k g_k,    s = step_scale(eta) = sum_{s<t} eta_s eta_t

(eta^2 T (T-1) / 2 for a constant step).

So the K^2 HVPs H_k g_j decide everything: once they are stored, ||Delta(a)|| of any mixture is
a quadratic form in vec(a a^T) with the Gram matrix of the v_kj (O(K^4) per mixture), and
the first-order loss effect g_j . Delta(a) needs only the K x K^2 inner products g_j . v_kl.
The expansion is exact to second order for plain gradient descent with fixed batches; with
Adam or sampled batches it is a diagnostic, checked against measured merge-vs-mix distances.

At any model size: K^2 vectors of P parameters do not fit in memory (K = 4 at 1B parameters is
64 GB in float32), so nothing here holds them all. `probe_vectors` puts each g_k and H_k g_j
into a `VectorStore` as soon as it is complete (the stage's writes safetensors files,
`probe_shards`) and holds only the group of `chunk_size` gradients it multiplies and their
sums over the batches; every reduction (norms, the Gram matrix, d(alpha)) runs over parameter
slices (`chunk_length`) of all K^2 vectors at once; the task-vector Gram matrices hold at most
two experts. `probe` and `ProbeResult` keep all vectors in memory, for small models.

Shapes: K domains, P parameters (flat, `hvp.param_names` order), N mixtures.

The package, by what each module holds: `probing.py` (the gradients and HVPs, streamed to a
`VectorStore`, and their reduction), `task_vectors.py` (task-vector Gram matrices and cosines)
and `predictions.py` (Delta(alpha), its norm and its first-order loss effect).
"""

from parammix_core.interference.predictions import (
    first_order_loss_effect,
    off_diagonal,
    outer_weights,
    pair_weights,
    predicted_delta,
    predicted_delta_norms,
    step_scale,
)
from parammix_core.interference.probing import (
    CHUNK_ELEMENTS,
    Chunk,
    ProbeError,
    ProbeResult,
    ProbeSummary,
    Progress,
    VectorStore,
    chunk_length,
    probe,
    probe_vectors,
    summarise,
    v_of,
)
from parammix_core.interference.task_vectors import (
    LAYER,
    gram_cosines,
    layer_group,
    per_layer_cosines,
    task_vector_cosines,
    task_vector_grams,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "LAYER",
    "Chunk",
    "ProbeError",
    "ProbeResult",
    "ProbeSummary",
    "Progress",
    "VectorStore",
    "chunk_length",
    "first_order_loss_effect",
    "gram_cosines",
    "layer_group",
    "off_diagonal",
    "outer_weights",
    "pair_weights",
    "per_layer_cosines",
    "predicted_delta",
    "predicted_delta_norms",
    "probe",
    "probe_vectors",
    "step_scale",
    "summarise",
    "task_vector_cosines",
    "task_vector_grams",
    "v_of",
]
