"""The pipeline's stages as plain functions: store in, library call, store out.

Each stage has a `*_ref` function (the content address of its output, computed from the config
slice that matters and the upstream refs, without running anything) and a run function that
returns that ref, computing and publishing the artifact only when the store does not have it
yet. Prefect tasks (`tasks/`) wrap these one to one and use the same ref as cache key, so a
rerun skips finished work with or without Prefect's database. One module per stage.

With `training.processes` > 1 the training stages (base, experts, mixed and final runs) run
themselves on that many processes under torchrun (`launch.py`); only rank 0 publishes.
"""

from parammix_core.stages.base import base_ref, build_base
from parammix_core.stages.common import Progress, open_store
from parammix_core.stages.data import data_ref, prepare_domains, tokenizer_source
from parammix_core.stages.evaluate import (
    _include_paths,
    builtin_suite,
    eval_ref,
    evaluation_mixtures,
    load_doc_scores,
    load_rows,
    merge_and_evaluate,
    mixture_batches,
    suite_ref,
)
from parammix_core.stages.experts import expert_ref, train_expert
from parammix_core.stages.imports import import_runs, imports_ref, load_imported
from parammix_core.stages.probe import interference_probe, probe_ref
from parammix_core.stages.probe_files import load_probe
from parammix_core.stages.proposals import (
    adaptive,
    load_proposals,
    n_rounds,
    proposals_ref,
    propose,
    round_batches,
)
from parammix_core.stages.report import (
    noise_section,
    probe_section,
    report,
    report_path,
    report_ref,
    report_text,
    summary,
)
from parammix_core.stages.search import choice_ref, load_choice, optimise
from parammix_core.stages.search_inputs import inputs_ref, needs_inputs, search_inputs
from parammix_core.stages.surrogates import fit, load_surrogates, surrogate_ref, surrogate_targets

__all__ = [
    "Progress",
    "_include_paths",
    "adaptive",
    "base_ref",
    "build_base",
    "builtin_suite",
    "choice_ref",
    "data_ref",
    "eval_ref",
    "evaluation_mixtures",
    "expert_ref",
    "fit",
    "import_runs",
    "imports_ref",
    "inputs_ref",
    "interference_probe",
    "load_choice",
    "load_doc_scores",
    "load_imported",
    "load_probe",
    "load_proposals",
    "load_rows",
    "load_surrogates",
    "merge_and_evaluate",
    "mixture_batches",
    "n_rounds",
    "needs_inputs",
    "noise_section",
    "open_store",
    "optimise",
    "prepare_domains",
    "probe_ref",
    "probe_section",
    "proposals_ref",
    "propose",
    "report",
    "report_path",
    "report_ref",
    "report_text",
    "round_batches",
    "search_inputs",
    "suite_ref",
    "summary",
    "surrogate_ref",
    "surrogate_targets",
    "tokenizer_source",
    "train_expert",
]
