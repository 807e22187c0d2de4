"""The experiment config as the flows' parameter schema: what the UI form and the API enforce."""

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError, validate

from flows.evaluate_mixtures import evaluate_mixtures
from flows.param_mix import param_mix
from flows.refit import refit_surrogates


@pytest.mark.parametrize("flow", [param_mix, evaluate_mixtures, refit_surrogates])
def test_bad_config_values_are_refused_by_the_schema(flow):
    schema = parameter_schema(flow).model_dump_for_openapi()
    validate({"exp": {"search": {"n_mixtures": 48}}}, schema, raise_on_error=True)
    bad = [
        ({"search": {"n_mixtures": 0}}, "exp.search.n_mixtures"),
        ({"search": {"strategy": "grid"}}, "exp.search.strategy"),
        ({"training": {"expert": {"lr": -1.0}}}, "exp.training.expert.lr"),
        ({"search": {"no_such_field": 1}}, "exp.search"),
    ]
    for exp, field in bad:
        with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
            validate({"exp": exp}, schema, raise_on_error=True)


def test_schema_documents_the_fields():
    schema = parameter_schema(param_mix).model_dump_for_openapi()
    search = schema["definitions"]["SearchConfig"]["properties"]
    assert search["n_mixtures"]["exclusiveMinimum"] == 0
    assert search["n_mixtures"]["description"]


@pytest.mark.parametrize("flow", [param_mix, evaluate_mixtures, refit_surrogates])
def test_the_run_form_is_short_by_default(flow):
    """A preset or file and a few overrides; the whole experiment only if asked for."""
    schema = parameter_schema(flow).model_dump_for_openapi()
    props = schema["properties"]
    assert props["exp"]["default"] is None  # not 176 pre-filled fields
    assert {"type": "null"} in props["exp"]["anyOf"]
    assert props["config"]["default"] is None and props["overrides"]["default"] is None
    validate({"config": "micro", "overrides": ["seed=1"]}, schema, raise_on_error=True)
