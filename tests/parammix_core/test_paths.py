"""Where the cache lives: PARAMMIX_CACHE, else the home folder's; an empty value is unset."""

from pathlib import Path

from parammix_core.paths import cache_root


def test_an_empty_cache_variable_is_unset_not_the_working_folder(monkeypatch, tmp_path: Path):
    """An audit (2026-12-07) found `PARAMMIX_CACHE=` writing debug logs to ./logs."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PARAMMIX_CACHE", "")
    assert cache_root() == tmp_path / ".cache/parammix"
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
