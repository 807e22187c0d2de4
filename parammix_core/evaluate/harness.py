"""Score the live merged model on lm-eval tasks and held-out loss, many times, fast.

The fan-out evaluates ~10^2 merges of the same architecture, changing the weights in place
between calls. Everything that does not depend on the weights is therefore built once per
`Evaluator`: the task index (only our folder, not lm-eval's ~14k built-in YAMLs), the task
objects with their loaded datasets, the `HFLM` wrapper around the model object, and the
tokenisation of every (context, continuation) pair. Each `evaluate()` then runs lm-eval's own
`evaluate` on the current weights, so any lm-eval task (MMLU, GSM8K, ...) works unchanged.

Tasks whose metric is a continuous one (`neg_bpb`, `p_gold`: `continuous`) are not run through
lm-eval's `evaluate`: their log-likelihood requests, built once from lm-eval's own task objects,
go to the same `HFLM` in one call per evaluation, and nothing is generated for them.

Standard errors are part of the result, not decoration: a surrogate fitted to differences
smaller than their noise learns the noise. For metrics aggregated by a mean (acc, acc_norm, the
built-in suite's p_correct) lm-eval computes the closed-form standard error whenever
`bootstrap_iters > 0`, without resampling, so that is what we ask for. Only if some task uses
an aggregation lm-eval would bootstrap (F1, BLEU, ...: a process pool per call) do we pass 0;
then 0/1 metrics get the binomial sqrt(p(1-p)/(n-1)) (equal to lm-eval's `mean_stderr` for
0/1 values) and the others NaN rather than a made-up number.

One `Evaluator` per thread: it holds per-instance state only (no module globals besides the
logger levels, which are set idempotently).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from lm_eval.api.metrics import mean as lm_eval_mean
from lm_eval.evaluator import evaluate as lm_eval_evaluate
from lm_eval.models.huggingface import HFLM

from parammix_core.config import EvalTask
from parammix_core.evaluate.continuous import (
    ContinuousMetricError,
    ContinuousScorer,
    TaskScores,
    is_continuous,
    score_all,
)
from parammix_core.evaluate.heldout import block_losses, mean_and_stderr
from parammix_core.evaluate.resolve import (
    metric_key,
)
from parammix_core.evaluate.task_loading import EvaluationError, load_tasks

# Metrics whose per-document values are 0 or 1, so the binomial standard error applies.
BINARY_METRICS = frozenset({"acc", "acc_norm", "acc_bytes", "acc_mutual_info", "exact_match"})
# lm-eval re-seeds few-shot sampling with this before every call, so calls are reproducible.
FEWSHOT_SEED = 1234
_QUIET_LOGGERS = ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "evaluate")


class _CachedHFLM(HFLM):
    """`HFLM` that tokenises each (context, continuation) pair once per evaluator.

    Every call asks for exactly the same pairs, and the tokenizer never changes, so re-encoding
    them per candidate is pure overhead (about a fifth of a call on a tiny model). Progress
    bars of the per-call model passes are off: one evaluation is one small step of a fan-out.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pair_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        key = (context, continuation)
        if key not in self._pair_cache:
            self._pair_cache[key] = super()._encode_pair(context, continuation)
        context_enc, continuation_enc = self._pair_cache[key]
        return list(context_enc), list(continuation_enc)

    def loglikelihood(self, requests, disable_tqdm: bool = True):
        return super().loglikelihood(requests, disable_tqdm=True)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):
        return super().loglikelihood_rolling(requests, disable_tqdm=True)

    def generate_until(self, requests, disable_tqdm: bool = True):
        return super().generate_until(requests, disable_tqdm=True)


def _quiet_loggers() -> None:
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    # HFLM warns on every construction that it was handed a model object: that is the point.
    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of a mean of n 0/1 values with mean p (sample std with n-1)."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else math.nan


def aggregate_groups(
    tasks: Sequence[EvalTask], scores: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """`group.<g>`: mean of its tasks' scores; `group.<g>.stderr`: sqrt(sum se^2) / n_tasks.

    The tasks' documents are independent, so the variance of the mean is the sum of the
    tasks' variances over n_tasks^2.
    """
    members: dict[str, list[str]] = {}
    for task in tasks:
        members.setdefault(task.group, []).append(task.name)
    out = {}
    for group, names in members.items():
        values = [scores[name][0] for name in names]
        errors = [scores[name][1] for name in names]
        out[f"group.{group}"] = sum(values) / len(values)
        out[f"group.{group}.stderr"] = math.sqrt(sum(e * e for e in errors)) / len(errors)
    return out


class Evaluator:
    """Evaluates one live model object again and again as its weights change in place.

    Args:
        model: a `transformers` causal LM, already on `device`. Only its weights may change
            between `evaluate()` calls (same object, same shapes).
        tokenizer: its tokenizer (a `PreTrainedTokenizerBase`).
        tasks: lm-eval task (or group) names, their capability group and metric, and per
            task the local data files standing in for its dataset and a generation cap.
        include_path: folder(s) of task YAMLs, searched before lm-eval's own tasks (found by
            name without indexing all ~14k of them: `resolve.TaskFinder`).
        batch_size: requests per forward pass (and held-out blocks per pass).
        device: the model's device.
        num_fewshot: in-context examples per document, for tasks whose YAML does not fix 0.
        heldout: (N, T) token blocks per domain for `loss.<domain>`; None skips them.
        allow_code_execution: run lm-eval's unsafe_code tasks (humaneval, mbpp): lm-eval is
            told so (`confirm_run_unsafe_code`) and HF_ALLOW_CODE_EVAL=1 is set for the
            process; without it such tasks are refused here.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        tasks: Sequence[EvalTask],
        include_path: str | Path | Sequence[str | Path] | None,
        batch_size: int,
        device: torch.device | str,
        num_fewshot: int = 0,
        heldout: Mapping[str, torch.Tensor] | None = None,
        allow_code_execution: bool = False,
    ) -> None:
        _quiet_loggers()
        self.tasks = list(tasks)
        if not self.tasks:
            raise EvaluationError("no evaluation tasks given")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise EvaluationError(f"duplicate task names: {sorted(names)}")
        if batch_size < 1:
            raise EvaluationError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        param = next(model.parameters())
        if param.device.type != self.device.type or (
            self.device.index is not None and param.device != self.device
        ):
            raise EvaluationError(f"the model is on {param.device}, not on device {self.device}")
        self.model = model
        self.batch_size = batch_size
        self.allow_code_execution = allow_code_execution

        loaded = load_tasks(self.tasks, include_path, num_fewshot, allow_code_execution)
        manager, built, self._task_dict = loaded.manager, loaded.built, loaded.task_dict
        self._n_docs = {n: sum(len(t.eval_docs) for t in loaded.leaves(n)) for n in names}
        self._keys: dict[str, str] = {}  # task -> the metric,filter key its score is read from
        self._continuous = self._continuous_scorers()
        # lm-eval's own evaluate runs only the tasks with a metric lm-eval reports.
        own = [built[t.name] for t in self.tasks if t.name not in self._continuous or t.also]
        self._own_dict = manager.load(own) if own else None
        # Any positive value: mean aggregations get lm-eval's closed-form stderr, no resampling.
        own_leaves = self._own_dict["tasks"].values() if self._own_dict else ()
        closed_form = all(
            agg is lm_eval_mean for task in own_leaves for agg in task.aggregation().values()
        )
        self._bootstrap_iters = 1 if closed_form else 0

        self._lm = _CachedHFLM(
            pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(self.device)
        )
        self._heldout = {
            domain: self._check_blocks(domain, blocks) for domain, blocks in (heldout or {}).items()
        }

    def _continuous_scorers(self) -> dict[str, ContinuousScorer]:
        """The log-likelihood requests of the tasks whose metric is computed here, built once
        from lm-eval's own task objects (few-shot examples drawn as lm-eval's calls draw them)."""
        scorers = {}
        for i, task in enumerate(self.tasks):
            if is_continuous(task.metric):
                try:
                    scorers[task.name] = ContinuousScorer(
                        self._task_dict["tasks"][task.name], task.metric, FEWSHOT_SEED
                    )
                except ContinuousMetricError as err:
                    raise EvaluationError(
                        f"evaluation.tasks.{i}.metric: {task.metric} of {task.name}: {err}"
                    ) from err
        return scorers

    def _check_blocks(self, domain: str, blocks: torch.Tensor) -> torch.Tensor:
        if not isinstance(blocks, torch.Tensor) or blocks.ndim != 2:
            raise EvaluationError(f"heldout[{domain!r}] must be an (N, T) tensor of token ids")
        return blocks.to(self.device)

    def evaluate(self) -> dict[str, float]:
        """Score the model's current weights.

        Returns:
            Flat floats: `task.<name>` (the configured metric) and `task.<name>.stderr`,
            `group.<g>` and `group.<g>.stderr`, and `loss.<domain>` and `loss.<domain>.stderr`
            when held-out blocks were given.
        """
        return self._run(log_samples=False)[0]

    def evaluate_blocks(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """`evaluate()` plus each held-out domain's per-block losses, shape (N,), for callers
        that resample the held-out set (evaluation-set noise) without a second forward pass."""
        out, _, blocks = self._run(log_samples=False, keep_blocks=True)
        return out, blocks

    def evaluate_docs(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """`evaluate()` plus each task's per-document metric, shape (n_docs,) by doc id.

        Every candidate sees the same documents, so differences between candidates are
        paired: their noise comes from the per-document scores, not from the aggregates.
        """
        out, per_doc, _ = self._run(log_samples=True)
        return out, per_doc

    def _run(
        self, log_samples: bool, keep_blocks: bool = False
    ) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, np.ndarray]]:
        try:
            output = self._run_own(log_samples)
            continuous = score_all(self._lm, self._continuous)
        except AssertionError as err:  # lm-eval asserts that a continuation fits the context
            raise EvaluationError(
                f"lm-eval refused a request of tasks {[t.name for t in self.tasks]} "
                f"({err or 'an answer longer than the context'}); the model's context is "
                f"{self._lm.max_length} tokens: raise data.block_size (or the checkpoint's "
                "context) or use tasks with shorter answers"
            ) from err
        results = output["results"]
        out: dict[str, float] = {}
        scores = {
            task.name: mean_and_stderr(torch.from_numpy(continuous[task.name].values))
            if task.name in continuous
            else self._score(task, results.get(task.name, {}))
            for task in self.tasks
        }
        for name, (value, stderr) in scores.items():
            out[f"task.{name}"] = value
            out[f"task.{name}.stderr"] = stderr
        out.update(aggregate_groups(self.tasks, scores))
        out.update(self._accuracy(results, continuous))
        out.update(self._also(results))
        kept = {}
        for domain, blocks in self._heldout.items():
            means = block_losses(self.model, blocks, self.batch_size, self.device)  # (N,)
            out[f"loss.{domain}"], out[f"loss.{domain}.stderr"] = mean_and_stderr(means)
            if keep_blocks:
                kept[domain] = means.numpy()
        per_doc = {name: scored.values for name, scored in continuous.items()}
        for task in self.tasks:
            samples = output.get("samples", {}).get(task.name)
            if samples and task.name not in continuous:  # a leaf task (groups have none)
                metric, filter_key = self._keys[task.name].split(",", 1)
                ordered = sorted(
                    (s for s in samples if s.get("filter", "none") == filter_key),
                    key=lambda s: s["doc_id"],
                )
                per_doc[task.name] = np.array([float(s[metric]) for s in ordered])
        return out, per_doc, kept

    def _accuracy(
        self, results: Mapping[str, Mapping[str, object]], continuous: Mapping[str, TaskScores]
    ) -> dict[str, float]:
        """`acc.<task>` and its binomial stderr, beside a task scored by another metric.

        Continuous metrics rank small models' mixtures; accuracy is what a reader knows, so
        it is reported wherever it costs nothing: from the continuous tasks' own requests, or
        from lm-eval's results when the task computes `acc` (the built-in suite does)."""
        out = {}
        for task in self.tasks:
            if task.metric.split(",")[0] == "acc":
                continue
            if task.name in continuous:
                correct = continuous[task.name].correct
                if correct is None:
                    continue
                value, n = float(correct.mean()), len(correct)
            else:
                metrics = results.get(task.name, {})
                key = metric_key("acc", {k: v for k, v in metrics.items() if "," in k})
                if key is None or not isinstance(metrics.get(key), int | float):
                    continue
                value, n = float(metrics[key]), self._n_docs[task.name]
            out[f"acc.{task.name}"] = value
            out[f"acc.{task.name}.stderr"] = binomial_stderr(value, n)
        return out

    def _also(self, results: Mapping[str, Mapping[str, object]]) -> dict[str, float]:
        """`also.<task>.<metric>` and its stderr: the lm-eval metrics asked for beside a task's
        own (a generated answer's exact match beside the gold answer's bits per byte)."""
        out = {}
        for task in self.tasks:
            for metric in task.also:
                value, stderr, _ = self._read(task.name, metric, results.get(task.name, {}))
                out[f"also.{task.name}.{metric}"] = value
                out[f"also.{task.name}.{metric}.stderr"] = stderr
        return out

    def _run_own(self, log_samples: bool) -> dict:
        """lm-eval's own evaluate over the tasks its metrics score (nothing when none)."""
        if self._own_dict is None:
            return {"results": {}}
        for task in self._own_dict["tasks"].values():
            task.set_fewshot_seed(seed=FEWSHOT_SEED)
        return lm_eval_evaluate(
            lm=self._lm,
            task_dict=self._own_dict,
            bootstrap_iters=self._bootstrap_iters,
            log_samples=log_samples,
            confirm_run_unsafe_code=self.allow_code_execution,
        )

    def _score(self, task: EvalTask, result: Mapping[str, object]) -> tuple[float, float]:
        """The configured metric of one task result, and its standard error."""
        value, stderr, self._keys[task.name] = self._read(task.name, task.metric, result)
        return value, stderr

    def _read(
        self, name: str, wanted: str, result: Mapping[str, object]
    ) -> tuple[float, float, str]:
        """One metric of a task result, its standard error and the `metric,filter` key read."""
        metrics = {k: v for k, v in result.items() if "," in k and "_stderr," not in k}
        key = metric_key(wanted, metrics)  # "acc": "acc,none", or its only filter
        if key is None or not isinstance(metrics.get(key), int | float):
            raise EvaluationError(
                f"task {name!r} did not produce metric {wanted!r}; "
                f"it produced: {', '.join(sorted(metrics)) or 'nothing'}"
            )
        value = float(metrics[key])
        metric, filter_key = key.split(",", 1)
        stderr = result.get(f"{metric}_stderr,{filter_key}")
        if not isinstance(stderr, int | float):
            n = self._n_docs[name]
            stderr = binomial_stderr(value, n) if metric in BINARY_METRICS else math.nan
        return value, float(stderr), key
