"""What every config section shares: strictness, the constrained number types, and the
bounds that keep a config from asking for more than any machine has (a count of 10^12
mixtures, a mapping of millions of entries) before anything runs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

BUILTIN_DOMAINS = ("math", "code", "sft", "web")
DEFAULT_GROUPS = ("math", "code", "knowledge", "language", "reasoning")


def _not_bool(value: object) -> object:
    # pydantic reads true as 1 and 1.0; in a config that is a typo, not a number
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


NotBool = BeforeValidator(_not_bool)


def _only_bool(value: object) -> object:
    # pydantic would read 1, "yes", "y" and "on" as true; a config says true or false
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_only_bool)]
# The bounds come before NotBool (which still runs first): so they stay standard JSON-schema
# bounds (exclusiveMinimum, ...), which the Prefect UI form and API enforce on deployments.
# Every count is bounded above too: generous for real runs, far below what would exhaust a
# machine, so a typo fails at load instead of in an allocation.
MAX_COUNT = 10**9
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT), NotBool]
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_COUNT), NotBool]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), NotBool]
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), NotBool]


def Count(hi: int, lo: int = 1) -> Any:
    """An integer in [lo, hi], booleans refused."""
    low = Field(gt=0) if lo == 1 else Field(ge=lo)  # "greater than 0", as users read it
    return Annotated[int, low, Field(le=hi), NotBool]


Text = Annotated[str, Field(max_length=4096)]  # paths, URLs, names: never megabytes

# Free-form mappings (fsspec options, a Ray runtime_env) take any JSON-like value, within
# these bounds.
FREE_FORM_ENTRIES = 256
FREE_FORM_DEPTH = 4
FREE_FORM_STRING = 4096


def _free_form(value: dict[str, Any]) -> dict[str, Any]:
    count = 0

    def visit(node: Any, depth: int, where: str) -> None:
        nonlocal count
        if isinstance(node, dict | list):
            if depth > FREE_FORM_DEPTH:
                raise ValueError(f"{where}: nested deeper than {FREE_FORM_DEPTH} levels")
            count += len(node)
            if count > FREE_FORM_ENTRIES:
                raise ValueError(f"more than {FREE_FORM_ENTRIES} entries in all")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(node, dict) and not isinstance(key, str):
                    raise ValueError(f"{where}: key {key!r} is not a string")
                visit(child, depth + 1, f"{where}.{key}" if where else str(key))
        elif isinstance(node, str):
            if len(node) > FREE_FORM_STRING:
                raise ValueError(f"{where}: string longer than {FREE_FORM_STRING} characters")
        elif node is not None and not isinstance(node, bool | int | float):
            raise ValueError(f"{where}: {type(node).__name__} is not a JSON value")

    visit(value, 1, "")
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_free_form)]


class Strict(BaseModel):
    """Base for every config section: unknown keys and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)
