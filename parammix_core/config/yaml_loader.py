"""Reading a config's YAML: the YAML 1.2 core schema, within a size budget.

PyYAML follows YAML 1.1, where `017` is 15, `1:00` is 60, `yes` and `on` are true and `1e3` is
a string; a config written today means 17, the text, the text and a thousand. The core schema
reads scalars as YAML 1.2 and JSON do. Anchors, aliases and merge keys are allowed for sharing
a block, within a budget, so a "billion laughs" file cannot expand into gigabytes at load.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import yaml

MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 64
MAX_NODES = 100_000
MAX_DIGITS = 64  # no field takes a longer number; Python refuses past 4300 with advice on sys

INT = "tag:yaml.org,2002:int"
MERGE = "tag:yaml.org,2002:merge"

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), in the order
# tried: the first pattern that matches a plain scalar gives its type.
CORE_SCHEMA = [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", [*"~nN", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    (INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
        r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
    (MERGE, r"<<", ["<"]),
]


class ConfigError(ValueError):
    """A config file that does not load; the message names the file and each bad field."""


class _ConfigLoader(yaml.SafeLoader):
    """safe_load with the core schema; refuses a key given twice in one mapping (PyYAML keeps
    the last one) and documents whose aliases expand past the budget."""

    yaml_implicit_resolvers: ClassVar[dict] = {}  # the core schema only, added below

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise ValueError(f"more than {MAX_ALIASES} aliases (line {line})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:  # `<<: *block`: its keys are the block's, may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "a mapping key must be a name, not a list or mapping",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if len(text) > MAX_DIGITS:
            line = node.start_mark.line + 1
            raise ValueError(f"a number of {len(text)} digits (line {line}); too large")
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)  # 017 is seventeen


for _tag, _pattern, _first in CORE_SCHEMA:
    _ConfigLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)
_ConfigLoader.add_constructor(INT, _ConfigLoader.construct_core_int)


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes of the document once every alias is expanded (shared nodes counted once each
    time they are referenced); stops as soon as the budget is passed."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in open_:
        raise ValueError("an alias refers to its own anchor (a recursive document)")
    open_.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, memo, open_)
        if size > MAX_NODES:
            raise ValueError(f"the document expands to more than {MAX_NODES} values")
    open_.discard(id(node))
    memo[id(node)] = size
    return size


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with the config's schema and limits; ConfigError naming `source` if it is
    refused."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES >> 10} KiB; not a config")
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{source}: refused: {err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: refused: nested too deeply") from None
    finally:
        loader.dispose()
