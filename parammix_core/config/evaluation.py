"""Config of evaluation (lm-eval tasks, held-out loss) and the interference probe."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from parammix_core.config.base import Count, Flag, Strict, Text

# A dataset split's name as `datasets` accepts it ("test", "validation", "train", "dev", ...).
SplitName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=64)]


LmEvalMetric = Annotated[str, Field(max_length=256, pattern=r"^[^,\s]+(,[^,\s]+)?$")]


class EvalTask(Strict):
    """One lm-eval task, the capability group it counts for, and the metric read from it."""

    name: str = Field(min_length=1, max_length=256)
    group: str = Field(min_length=1, max_length=64)
    metric: str = Field(
        "acc",
        max_length=256,
        pattern=r"^[^,\s]+(,[^,\s]+)?$",
        description="lm-eval metric, as `metric` or `metric,filter` (`exact_match,strict-match`); "
        "plain `acc` means `acc,none`, or the only filter reporting acc. Or one computed by "
        "Param-Mix from the task's own log-likelihood requests (nothing generated): `neg_bpb`, "
        "minus the bits per UTF-8 byte of the gold continuation (any multiple_choice, "
        "generate_until or loglikelihood task; for generate_until, the task's doc_to_target "
        "after its prompt), `p_gold`, the gold choice's probability normalised over the "
        "choices, or `margin_bpb`, the other choices' mean bits per byte minus the gold's "
        "(both multiple_choice). Higher is better, always.",
    )
    data_files: dict[SplitName, Text] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="Split -> local .json/.jsonl/.parquet/.csv file (or glob) in the dataset's "
        "own schema: lm-eval's task definition reads it instead of downloading its dataset.",
    )
    max_gen_toks: Count(1 << 20) | None = Field(
        None, description="Cap on generated tokens per answer (generate_until tasks only)."
    )
    docs: Count(100_000, lo=2) | None = Field(
        None,
        description="Documents of a built-in task (None: evaluation.builtin_docs_per_task): a "
        "task whose score moves with a run's data order more than with its mixture gets more.",
    )
    also: list[LmEvalMetric] = Field(
        default_factory=list,
        max_length=16,
        description="lm-eval metrics reported beside `metric`, outside the utility (rows "
        "`also.<task>.<metric>` in the final training's table): e.g. `exact_match,strict-match` "
        "beside `neg_bpb` for a generate_until task, which is then also run through lm-eval "
        "(generating an answer per document at every evaluation).",
    )

    @field_validator("also")
    @classmethod
    def _unique_metrics(cls, also: list[str]) -> list[str]:
        if len(set(also)) != len(also):
            raise ValueError(f"duplicate metrics: {also}")
        return also


def _default_tasks() -> list[EvalTask]:
    # neg_bpb: minus the bits per byte of the right choice. Measured on real mixed runs of
    # spread-out mixtures (benchmarks/metric_sweep.py, three seeds), two runs of the same
    # mixture agree on it more than on p_correct (the probability normalised over the
    # choices) for the utility and most groups on every seed; accuracy is reported beside it.
    return [
        EvalTask(name="pm_arithmetic", group="math", metric="neg_bpb"),
        EvalTask(name="pm_code_completion", group="code", metric="neg_bpb"),
        EvalTask(name="pm_stdlib_knowledge", group="knowledge", metric="neg_bpb"),
        EvalTask(name="pm_word_order", group="language", metric="neg_bpb"),
        EvalTask(name="pm_sequences", group="reasoning", metric="neg_bpb"),
    ]


class EvaluationConfig(Strict):
    """Benchmarks (lm-eval tasks grouped into capabilities) and per-domain held-out loss."""

    tasks: list[EvalTask] = Field(default_factory=_default_tasks, min_length=1, max_length=1000)
    include_path: Text | None = Field(
        None, description="Directory of your own lm-eval task YAMLs; None uses the built-in suite."
    )
    allow_code_execution: Flag = Field(
        False,
        description="Run tasks that execute model-generated code (humaneval, mbpp: lm-eval's "
        "unsafe_code tasks); only on a machine where that is safe.",
    )
    builtin_docs_per_task: Count(100_000) = Field(
        300, description="Documents generated per built-in task."
    )
    batch_size: Count(1 << 16) = Field(
        16,
        description="Requests or held-out blocks per forward pass; 16 is ~20 % faster than 64 on "
        "one CPU thread (cache-sized logits), raise it on a GPU.",
    )
    num_fewshot: Count(100, lo=0) = 0
    heldout_loss: Flag = Field(True, description="Also score held-out loss per domain.")
    proxy: Literal["merge", "corrected"] = Field(
        "merge",
        description="merge: theta(alpha); corrected: theta(alpha) plus the interference "
        "probe's predicted Delta(alpha), the second-order merge-vs-mix gap (needs the probe).",
    )

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[EvalTask]) -> list[EvalTask]:
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate task names: {dupes}")
        return tasks

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.tasks))


# --- interference probe -------------------------------------------------------------------


class ProbeConfig(Strict):
    """The second-order probe at the base: gradients g_k and Hessian-vector products H_k g_j."""

    enabled: Flag = Field(True, description="Run the interference_probe stage.")
    batches_per_domain: Count(10_000) = Field(2, description="Batches averaged per domain.")
    batch_size: Count(1 << 16) = Field(8, description="Blocks per probe batch.")
    method: Literal["auto", "forward_over_reverse", "double_backward"] = Field(
        "auto",
        description="HVP kernel; auto: double backward on CPU, forward-over-reverse elsewhere, "
        "then the other if the first raises.",
    )
    chunk_size: Count(10_000) | None = Field(
        None,
        description="HVP vectors per kernel call (None: all K at once). Each is a parameter-"
        "sized buffer while it is summed over a domain's batches; fewer use less memory but "
        "rebuild each batch's graph once per group.",
    )
