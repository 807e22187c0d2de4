"""Code versions in artifact keys: a change that can alter a stage's output gives the stages
that depend on it new keys; comments, docstrings and formatting change nothing."""

import re
from pathlib import Path

from parammix_core.stages.versions import (
    STAGE_MODULES,
    _installed_source,
    closure,
    code_version,
    versions_with,
)
from parammix_core.store import STAGES

ROOT = Path(__file__).resolve().parents[3]


def _source(module: str) -> str:
    text = _installed_source(module)
    assert text is not None, module
    return text


def test_every_published_stage_has_a_version_and_uses_it():
    assert set(STAGE_MODULES) == set(STAGES)
    for stage in STAGES:
        assert re.fullmatch(r"[0-9a-f]{16}", code_version(stage))
    calls = []
    for path in sorted((ROOT / "parammix_core" / "stages").glob("*.py")):
        calls += re.findall(r"ArtifactRef\.for_spec\((.*?)\)\n", path.read_text(), re.S)
    stage_calls = [c for c in calls if not c.startswith('"ckpt"')]
    assert stage_calls and all("code=code_version(" in c for c in stage_calls), stage_calls


def test_a_behaviour_change_moves_exactly_the_stages_that_import_it():
    before = versions_with({})
    train = _source("parammix_core.train")
    floor = "floor = cfg.min_lr_ratio * cfg.lr"
    assert floor in train
    changed = versions_with({"parammix_core.train": train.replace(floor, floor + " * 0.5")})
    moved = {s for s in STAGES if changed[s] != before[s]}
    users = {
        s
        for s, m in STAGE_MODULES.items()
        if "parammix_core.train" in closure(m, _installed_source)[0]
    }
    assert moved == users and {"base", "expert", "mixed", "final"} <= moved

    report = _source("parammix_core.report")
    edited = versions_with({"parammix_core.report": report + "\nEXTRA = 1\n"})
    assert edited["report"] != before["report"]
    assert edited["data"] == before["data"] and edited["expert"] == before["expert"]


def test_comments_docstrings_and_formatting_change_nothing():
    before = versions_with({})
    train = _source("parammix_core.train")
    cosmetic = '"""Another module docstring."""\n# a new comment\n' + train.split('"""', 2)[
        2
    ].replace("\n\n\n", "\n\n\n\n")
    assert versions_with({"parammix_core.train": cosmetic}) == before


def test_a_new_import_counts():
    before = versions_with({})
    model = _source("parammix_core.model")
    added = versions_with({"parammix_core.model": model + "\nimport parammix_core.ranking\n"})
    assert added["expert"] != before["expert"]


def test_an_edited_task_rescores_trained_runs_without_retraining_them():
    before = versions_with({})
    documents = _source("parammix_core.evaluate.suite.documents")
    query = 'doc["query"] = f\'{e.kind} {e.name}:\\n    """\''
    assert query in documents
    edited = versions_with(
        {"parammix_core.evaluate.suite.documents": documents.replace(query, query + " + ' '")}
    )
    moved = {s for s in STAGES if edited[s] != before[s]}
    assert {"evals", "validation", "final", "choice"} <= moved
    # the training stages keep their keys ("mixed": the mixed and the final runs)
    assert not moved & {"data", "base", "expert", "mixed"}


def test_a_choice_covers_the_surrogates_and_the_multi_fidelity_gp():
    before = versions_with({})
    verdict = _source("parammix_core.stages.fidelity_choice")
    edited = versions_with({"parammix_core.stages.fidelity_choice": verdict + "\nEXTRA = 1\n"})
    assert {s for s in STAGES if edited[s] != before[s]} == {"choice"}
    rounds = _source("parammix_core.stages.multifidelity")
    edited = versions_with({"parammix_core.stages.multifidelity": rounds + "\nEXTRA = 1\n"})
    assert {"runevals", "choice"} <= {s for s in STAGES if edited[s] != before[s]}


def test_a_change_to_how_the_mixture_is_chosen_keeps_every_evaluation_and_run():
    before = versions_with({})
    choice = _source("parammix_core.search.choice")
    edited = versions_with({"parammix_core.search.choice": choice + "\nEXTRA = 1\n"})
    assert {s for s in STAGES if edited[s] != before[s]} == {"choice", "report"}
    common = _source("parammix_core.search.common")
    edited = versions_with({"parammix_core.search.common": common + "\nEXTRA = 1\n"})
    assert {"evals", "validation", "final", "choice"} <= {
        s for s in STAGES if edited[s] != before[s]
    }


def test_a_change_to_how_real_runs_are_compared_rescores_nothing():
    before = versions_with({})
    analysis = _source("parammix_core.proxy_validation")
    edited = versions_with({"parammix_core.proxy_validation": analysis + "\nEXTRA = 1\n"})
    assert {s for s in STAGES if edited[s] != before[s]} == {"report"}


def test_a_change_to_the_figures_scores_no_merge_again():
    before = versions_with({})
    plots = _source("parammix_core.plots")
    edited = versions_with({"parammix_core.plots": plots + "\nEXTRA = 1\n"})
    moved = {s for s in STAGES if edited[s] != before[s]}
    assert {"probe", "report"} <= moved
    assert not moved & {"evals", "surrogates", "mixed", "final"}


def test_a_helper_of_the_readers_retrains_nothing():
    before = versions_with({})
    for module in ("parammix_core.stages.finite", "parammix_core.stages.probe_files"):
        edited = versions_with({module: _source(module) + "\nEXTRA = 1\n"})
        assert not {s for s in STAGES if edited[s] != before[s]} & {"base", "expert", "mixed"}


def test_a_new_config_field_re_keys_through_its_value_not_its_code():
    """Every stage imports Experiment, so every config module is in every closure: a field
    added to the evaluation section (as EvalTask.docs was) retrained the data and the base."""
    before = versions_with({})
    evaluation = _source("parammix_core.config.evaluation")
    field = "    also: list[LmEvalMetric] = Field("
    assert field in evaluation
    added = evaluation.replace(field, "    shots: int = Field(0, description='new')\n" + field)
    assert versions_with({"parammix_core.config.evaluation": added}) == before
    # what computes stays in every key: a method of a model, a module-level constant
    data = _source("parammix_core.config.data")
    names = "return [d.name for d in self.domains]"
    assert names in data
    reordered = data.replace(names, "return sorted(d.name for d in self.domains)")
    moved = versions_with({"parammix_core.config.data": reordered})
    assert all(moved[s] != before[s] for s in STAGES)
    base = _source("parammix_core.config.base")
    constant = 'DEFAULT_GROUPS = ("math", "code", "knowledge", "language", "reasoning")'
    assert constant in base
    fewer = base.replace(constant, 'DEFAULT_GROUPS = ("math", "code")')
    assert versions_with({"parammix_core.config.base": fewer})["data"] != before["data"]
