"""The shipped stdlib snapshot, and the embedded default's data pinned to the byte."""

import hashlib
import tarfile
from pathlib import Path

import pytest

from parammix_core import stages
from parammix_core.config import Experiment, apply_overrides
from parammix_core.data import DataError
from parammix_core.data.sources import code_texts, snapshot, web_texts

# sha256 of every file of the embedded default's prepared data (seed 0): the same bytes on
# every machine and Python. A change here changes every result of the default: say so.
DEFAULT_DATA = {
    "heldout_texts.json": "f3d48d2ad2ab5c58aed2a3f312dbcd3b3647387798697a6bb24dd3b1b5a7ddf5",
    "stats.json": "0cbce0eedbb4067982bb3da3b943c7fcd98242c42eb157f6085baf9ca3bb8f45",
    "tokenizer/tokenizer.json": "8e35e495322d0cd5aa5f0f9401569828d4f8439dc52f3dacfaa6674a53deafda",
    "tokenizer/tokenizer_config.json": (
        "251eb40a563791b9d36bdada68f075b37287a9f755f2bc38f45a180188c213d7"
    ),
    "tokens/code.heldout-00000.safetensors": (
        "e2a168b5256dd0126b7bf663bbbc2ea7332d120a82019b61abee9c01eb745f36"
    ),
    "tokens/code.train-00000.safetensors": (
        "61203305b7d06f67920eff1aab38177b50f4587ba5f5eabee7a9b85498affaf5"
    ),
    "tokens/math.heldout-00000.safetensors": (
        "3fccc21a2e3fcd847fe9ec23e5f6f4aafa509d8ff4df6db4bb6a0064e6d37fe0"
    ),
    "tokens/math.train-00000.safetensors": (
        "cdbc134961afffae6a7d71578861ab09b2d7a2ca7d390d2b8cff745119e301e4"
    ),
    "tokens/sft.heldout-00000.safetensors": (
        "65749c9df4fc665f80127b5b60e986661b87698e46e9e0abcbcd201225c30517"
    ),
    "tokens/sft.train-00000.safetensors": (
        "fdd3c8b749edd569068aadce8158ec2948f6cbb6249aeee846755d91ad2e71d8"
    ),
    "tokens/web.heldout-00000.safetensors": (
        "4efe14e30d7f481d9b26b5fcc838192e7cf70a0dfde634584bf0672adf8ba1c9"
    ),
    "tokens/web.train-00000.safetensors": (
        "3d37d49e2e53b64112bec10f8067d3a21cc354610ca88e82d9cc69cd4facf673"
    ),
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def digest(texts: list[str]) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def test_the_snapshot_unpacks_once_into_the_cache(cache: Path):
    root = snapshot.stdlib_dir()
    assert root.parent == cache / "stdlib"
    assert (root / "LICENSE.txt").read_text().startswith("A. HISTORY OF THE SOFTWARE")
    assert (root / "pydoc_data" / "topics.py").stat().st_size > 500_000
    assert len(snapshot.snapshot_files(root)) == 545
    stamp = (root / "os.py").stat().st_mtime_ns
    assert snapshot.stdlib_dir() == root and (root / "os.py").stat().st_mtime_ns == stamp


def test_a_damaged_snapshot_is_refused_and_nothing_unpacked(cache: Path, tmp_path, monkeypatch):
    damaged = tmp_path / "stdlib.tar.xz"
    raw = bytearray(snapshot.SNAPSHOT.read_bytes())
    raw[1000] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    monkeypatch.setattr(snapshot, "SNAPSHOT", damaged)
    with pytest.raises(DataError, match=r"stdlib.tar.xz: damaged \(SHA-256 differs"):
        snapshot.stdlib_dir()
    assert not (cache / "stdlib").exists() or not any((cache / "stdlib").iterdir())


def test_write_snapshot_is_deterministic_and_round_trips(tmp_path: Path):
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "pkg" / "b.py").write_text('"""Doc."""\n')
    files = [root / "pkg" / "b.py", root / "a.py"]
    first = snapshot.write_snapshot(root, files, tmp_path / "one.tar.xz")
    (root / "a.py").touch()  # a later time changes nothing
    assert snapshot.write_snapshot(root, files[::-1], tmp_path / "two.tar.xz") == first
    assert (tmp_path / "one.tar.xz").read_bytes() == (tmp_path / "two.tar.xz").read_bytes()
    with tarfile.open(tmp_path / "one.tar.xz") as tar:
        assert tar.getnames() == ["a.py", "pkg/b.py"]
        assert tar.extractfile("pkg/b.py").read() == b'"""Doc."""\n'


def test_code_and_web_are_the_same_bytes_on_every_machine(cache: Path):
    assert digest(code_texts(1, 300_000)) == (
        "c4c969f40a1c585f824f5166ce7c36f3e4498581cf3178f0f7e2d87cbed3c800"
    )
    assert digest(web_texts(1, 300_000)) == (
        "98f6679e13c6dcc4e7982d06ef4fec4471064d3f2ff089af6c0b92fe04d67a18"
    )


@pytest.mark.slow
def test_the_default_data_artifact_is_pinned(cache: Path, tmp_path: Path):
    exp = apply_overrides(Experiment(), [f"store.url={tmp_path / 'store'}"], "default")
    store = stages.open_store(exp)
    ref = stages.prepare_domains(exp, store)
    files = store.manifest(ref)["files"]
    assert {name: f["sha256"] for name, f in files.items()} == DEFAULT_DATA
