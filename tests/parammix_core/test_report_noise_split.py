"""The real runs' noise split in words: whether more evaluation documents would narrow it."""

from parammix_core import report
from parammix_core.report.noise_split import task_noise_section


def _with_chosen(chosen: dict) -> dict:
    proxy = {"proxy": {"merge": {"spearman": 0.8}}, "best_trivial_spearman": 0.5}
    return {"analysis": {"utility": {**proxy, "ceiling": {"spearman": 0.7}, "chosen": chosen}}}


def test_the_outlook_says_whether_more_documents_would_narrow_the_runs_noise():
    chosen = {"proxy_gain": 0.05, "real_gain": 0.001, "n_fit": 11, "slope": 0.6}
    chosen.update(predicted=0.03, predicted_low=-0.01, predicted_high=0.05)
    info = _with_chosen(chosen)
    shift = {"noise_sd": 0.0164, "documents_sd": 0.0029, "doubled_sd": 0.01627, "docs": 300}
    own = {"noise_sd": 0.0030, "documents_sd": 0.0028, "doubled_sd": 0.00225, "docs": 300}
    info["task_noise"] = {"pm_stdlib_knowledge": shift, "pm_arithmetic": shift}
    assert report.real_training_outlook(info).endswith(
        "may separate the mixtures more. More evaluation documents would not narrow the real "
        "runs' noise: twice the documents lower it by 1-1 % per task, the rest being a shift "
        "of the whole run."
    )
    info["task_noise"]["pm_arithmetic"] = own
    assert report.real_training_outlook(info).endswith(
        "Twice the documents would lower the real runs' noise on pm_arithmetic (-25 %) "
        "(`evaluation.tasks[].docs`, or `evaluation.builtin_docs_per_task` for the built-in "
        "tasks); on the other tasks the noise is a shift of the whole run."
    )
    # the utility's own split, when measured, is what the advice is about
    info["utility_noise"] = {"noise_sd": 0.0041, "documents_sd": 0.0011, "doubled_sd": 0.00403}
    assert report.real_training_outlook(info).endswith(
        "may separate the mixtures more. Twice the evaluation documents on every task would "
        "lower the utility's run-to-run noise sd from 0.0041 to 0.0040 (-2 %): the rest is a "
        "shift of the whole run (its data order) that more documents do not average away."
    )
    info["utility_noise"] = {"noise_sd": 0.0041, "documents_sd": 0.0040, "doubled_sd": 0.0031}
    assert report.real_training_outlook(info).endswith(
        "from 0.0041 to 0.0031 (-24 %) (`evaluation.builtin_docs_per_task`, "
        "`evaluation.tasks[].docs`)."
    )
    nan = {"noise_sd": None, "documents_sd": None, "doubled_sd": None, "docs": 300}
    info["task_noise"] = {"pm_arithmetic": nan}  # two mixtures trained twice: nothing measured
    info["utility_noise"] = {"noise_sd": None, "documents_sd": None, "doubled_sd": None}
    assert report.real_training_outlook(info).endswith("may separate the mixtures more.")
    section = task_noise_section(
        {"t": own}, {"noise_sd": 0.004, "documents_sd": 0.002, "doubled_sd": 0.0037}
    )
    assert "| t | 300 | 0.0030 | 0.0028 | 0.0022 |" in section
    assert "| utility | all | 0.0040 | 0.0020 | 0.0037 |" in section
    assert section.endswith(
        "from 0.0040 to 0.0037 (-7 %): the rest is a shift of the whole run (its data order) "
        "that more documents do not average away."
    )
    assert task_noise_section({"t": own}).endswith(
        "on t (-25 %) (`evaluation.tasks[].docs`, or `evaluation.builtin_docs_per_task` for "
        "the built-in tasks)."
    )
