"""What every config section shares: strictness and the constrained number types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

BUILTIN_DOMAINS = ("math", "code", "sft", "web")
DEFAULT_GROUPS = ("math", "code", "knowledge", "language", "reasoning")


def _not_bool(value: object) -> object:
    # pydantic reads true as 1 and 1.0; in a config that is a typo, not a number
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


NotBool = BeforeValidator(_not_bool)
# The bounds come before NotBool (which still runs first): so they stay standard JSON-schema
# bounds (exclusiveMinimum, ...), which the Prefect UI form and API enforce on deployments.
PositiveInt = Annotated[int, Field(gt=0), NotBool]
NonNegativeInt = Annotated[int, Field(ge=0), NotBool]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), NotBool]
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), NotBool]


class Strict(BaseModel):
    """Base for every config section: unknown keys and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)
