"""An experiment from what a user gives: a config file or preset, dotted overrides, or a
whole experiment (the run form of a deployment, the CLI's --config/--set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parammix_core.config.experiment import (
    ConfigError,
    Experiment,
    load_experiment,
    load_yaml,
    parse_experiment,
)
from parammix_core.config.runtime import secret_name
from parammix_core.config.urls import secret_in_url

# The shipped configs (configs/<name>.yaml beside the package): named presets.
PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs"


def apply_overrides(
    exp: Experiment, overrides: list[str], source: str, flag: str = "--set"
) -> Experiment:
    """`a.b.c=value` items (value parsed as YAML) on top of a loaded config; errors name each
    item as the user gave it (`flag`: the CLI's `--set`, a flow run's `overrides`)."""
    if not overrides:
        return exp
    data: dict[str, Any] = exp.model_dump(mode="json")
    for item in overrides:
        path, sep, raw = item.partition("=")
        path = path.strip()  # `--set 'seed = 1'` as YAML would read `seed: 1`
        if not sep or not path:
            raise ConfigError(f"{flag} {_shown(item)!r}: expected dotted.path=value")
        try:
            value = load_yaml(raw, f"{flag} {_shown(item)!r}: the value")
        except ConfigError:
            if not _secret(item):
                raise
            # YAML's error quotes the value, which may be a secret
            raise ConfigError(f"{flag} {_shown(item)!r}: the value is not valid YAML") from None
        node: Any = data
        keys = path.split(".")
        try:
            for k in keys[:-1]:
                node = node[_index(k)] if isinstance(node, list) else node.setdefault(k, {})
            if isinstance(node, list):
                node[_index(keys[-1])] = value
            else:
                node[keys[-1]] = value
        except (ValueError, IndexError, TypeError, AttributeError):
            raise ConfigError(
                f"{flag} {_shown(item)!r}: the config has no field {path!r} (list items take an "
                "index, e.g. data.domains.0.name)"
            ) from None
    return parse_experiment(data, f"{source} with {flag}")


SHOWN_CHARS = 80


def _shown(item: str) -> str:
    """A `--set` item as an error may quote it: the value hidden when it may be a secret, cut
    when long."""
    if _secret(item):
        return f"{item.partition('=')[0]}=<hidden>"
    return item if len(item) <= SHOWN_CHARS else f"{item[:SHOWN_CHARS]}... ({len(item)} chars)"


def _secret(item: str) -> bool:
    """A secret-like name, or a value that is a URL with a user part."""
    path, sep, raw = item.partition("=")
    name = secret_name(path.strip().rsplit(".", 1)[-1])
    return bool(sep) and bool(name or "@" in raw or secret_in_url(raw))


def _index(key: str) -> int:
    """A list item's position as written: 0, 1, ...; never Python's -1 (the last item)."""
    if not key.isdecimal():
        raise ValueError(key)
    return int(key)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def config_path(config: str) -> Path:
    """A preset's file (`micro`) or the path given (`configs/micro.yaml`, `/abs/exp.yaml`)."""
    if "/" not in config and not config.endswith((".yaml", ".yml")):
        path = PRESETS_DIR / f"{config}.yaml"
        if not path.is_file():
            raise ConfigError(f"config {config!r}: no such preset; presets are {presets()}")
        return path
    return Path(config)


def resolve_experiment(
    exp: Experiment | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> Experiment:
    """The experiment of a flow run: `config` (a preset name or YAML path) or `exp` (a whole
    experiment) or the embedded default, then `overrides` on top."""
    if exp is not None and config is not None:
        raise ConfigError(
            "give either config (a preset or file) or exp (a whole experiment), not both; a "
            "deployment whose default parameters hold an exp (docker/setup.sh's) runs another "
            "config with exp=null beside config=... (e.g. --param exp=null), one that holds a "
            "config (parammix serve's) runs a whole exp with config=null beside exp=..."
        )
    if config is not None:
        exp = load_experiment(config_path(config))
    base = exp if exp is not None else Experiment()
    return apply_overrides(base, list(overrides or []), config or "the experiment", "overrides")
