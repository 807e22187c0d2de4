"""What the evaluation stage tells a user to change."""

from parammix_core.config import EvalTask, Experiment
from parammix_core.stages.evaluate import more_documents


def test_the_advice_on_documents_names_a_setting_only_where_it_applies():
    """evaluation.builtin_docs_per_task sizes the built-in tasks only."""
    exp = Experiment()
    assert more_documents(exp) == (
        "more evaluation documents (evaluation.builtin_docs_per_task, 300 now)"
    )
    own = exp.evaluation.model_copy(
        update={"tasks": [EvalTask(name="arc_easy", group="reasoning", metric="acc")]}
    )
    assert more_documents(exp.model_copy(update={"evaluation": own})) == (
        "more evaluation documents (larger task sets)"
    )
