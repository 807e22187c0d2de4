"""Find lm-eval task, group and tag definitions by name without indexing all of lm-eval.

lm-eval's `TaskManager` parses every one of its ~14k task YAMLs (10-25 s on 2 cores) before it
can load any one task. A task, group or tag is named literally in the file that defines it or
in a file that file includes, so `TaskFinder` reads the YAML files' bytes (about 0.3 s), keeps
those mentioning a configured name (and the files that include those), and parses only them,
with lm-eval's own loader and indexing rules (`load_yaml`, `TaskIndex.process_cfg`). No dataset
is opened, no task module imported. `task_info` turns what is found into what a config must
agree with.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import importlib.util
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from lm_eval.tasks._index import Entry, Kind, TaskIndex
from lm_eval.tasks._yaml_loader import load_yaml

from parammix_core.evaluate.suite import BUILTIN_TASKS, task_config


def lm_eval_tasks_dir() -> Path:
    """lm-eval's own task folder."""
    spec = importlib.util.find_spec("lm_eval")
    return Path(spec.origin).parent / "tasks"


# A name stands as a whole word when the bytes around it cannot continue a name or a path.
_WORD_AFTER = frozenset(c.encode() for c in string.ascii_letters + string.digits + "_.-")
_WORD_BEFORE = _WORD_AFTER | {b"/"}


_SEPARATOR = b"\n\0\n"  # between files in one searched blob: no name or path crosses it
_PATH_TAIL = re.compile(rb"[\w.\-/]*\Z")


def _path_ending_at(text: bytes, end: int) -> bytes:
    """The folder part of a relative path whose file name starts at `end` ("../" in
    "include: ../x_yaml")."""
    return _PATH_TAIL.search(text, max(0, end - 1024), end).group()


_NAME_LINE = re.compile(
    rb"^[\"']?(?:task|group)[\"']?\s*:\s*[\"']?([\w.\-+@:]+)[\"']?\s*(?:#.*)?$", re.M
)


# Not YAML: skipped when reading a task folder (which also holds code, docs and data).
_NOT_YAML = {".py", ".pyc", ".md", ".sh", ".json", ".jsonl", ".tsv", ".csv", ".txt", ".parquet"}
_NOT_YAML |= {".lark", ".jpg", ".png", ".gz", ".zip", ".ipynb", ".cfg", ".toml"}
MAX_YAML_BYTES = 1 << 20


def _yaml_files(root: Path) -> list[str]:
    out, folders = [], [str(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for e in entries:
                if e.is_dir() and e.name not in ("__pycache__", ".ipynb_checkpoints"):
                    folders.append(e.path)
                elif (
                    e.is_file()
                    and os.path.splitext(e.name)[1].lower() not in _NOT_YAML
                    and e.stat().st_size <= MAX_YAML_BYTES
                ):
                    out.append(e.path)
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _Folder:
    """One folder of task YAMLs, read once, searched by name, parsed only where it matches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._texts: list[tuple[str, bytes]] | None = None
        self._blob = b""  # every text, separated by NUL lines: one regex pass searches all
        self._starts: list[int] = []  # where each text starts in the blob
        self._configs: dict[str, dict] = {}
        self._entries: dict[str, Entry] = {}
        self._searched: set[str] = set()
        self.unreadable: dict[str, str] = {}  # path -> why lm-eval's loader refused it

    def texts(self) -> list[tuple[str, bytes]]:
        """(path, bytes) of every file that may be YAML (task files and the templates they
        include, often without a suffix), sorted as lm-eval's index walks them."""
        if self._texts is None:
            self._texts = [(p, _read(p)) for p in sorted(_yaml_files(self.root))]
            offset = 0
            for _, text in self._texts:
                self._starts.append(offset)
                offset += len(text) + len(_SEPARATOR)
            self._blob = _SEPARATOR.join(text for _, text in self._texts)
        return self._texts

    def _matches(self, words: Iterable[bytes]) -> Iterator[tuple[str, int, bytes]]:
        """(file, offset in the blob, word) wherever one of `words` stands as a whole word
        (not inside a longer name or a path); `bytes.find`, far faster than a regex here."""
        texts = self.texts()
        for word in set(words):
            at = self._blob.find(word)
            while at >= 0:
                end = at + len(word)
                if self._blob[at - 1 : at] not in _WORD_BEFORE and (
                    self._blob[end : end + 1] not in _WORD_AFTER
                ):
                    yield texts[bisect.bisect_right(self._starts, at) - 1][0], at, word
                at = self._blob.find(word, end)

    def lookup(self, names: set[str]) -> dict[str, Entry]:
        """The entries of `names` defined in this folder, by lm-eval's rules (the first file
        in path order wins; a tag gathers every task naming it) over every file naming them."""
        todo = names - self._searched
        if todo:
            index: dict[str, Entry] = {}
            for path in self._candidates(todo):
                try:  # as TaskIndex.build: a file that is no task or group is skipped
                    TaskIndex.process_cfg(self._config(path), Path(path), index)
                except Exception as err:  # kept: the file may be the user's broken task
                    self.unreadable[path] = f"{type(err).__name__}: {err}".splitlines()[0]
                    continue
            self._entries.update({n: index[n] for n in todo if n in index})
            self._searched |= todo
        return {n: self._entries[n] for n in names if n in self._entries}

    def _candidates(self, names: set[str]) -> list[str]:
        """Files naming one of `names`, and the files including those, transitively."""
        found = {path for path, _, _ in self._matches(n.encode() for n in names)}
        frontier = set(found)
        while frontier:
            includers = self._includers(frontier) - found
            found |= includers
            frontier = includers
        return sorted(p for p in found if p.endswith(".yaml"))

    def _includers(self, targets: set[str]) -> set[str]:
        """Files whose text refers to one of `targets` by a relative path (an `include:`)."""
        by_name: dict[bytes, set[str]] = {}
        for t in targets:
            by_name.setdefault(os.path.basename(t).encode(), set()).add(os.path.normpath(t))
        out = set()
        for path, at, word in self._matches(by_name):
            ref = _path_ending_at(self._blob, at) + word
            target = os.path.normpath(os.path.join(os.path.dirname(path), ref.decode()))
            if target in by_name[word]:
                out.add(path)
        return out

    def _config(self, path: str) -> dict:
        """The file's config, includes followed, functions left as paths (parsed once)."""
        if path not in self._configs:
            self._configs[path] = load_yaml(path, resolve_func=False, recursive=True)
        return self._configs[path]

    def names(self) -> set[str]:
        """Every task and group name defined at the top of a file here (for suggestions)."""
        self.texts()
        return {m.decode() for m in _NAME_LINE.findall(self._blob)}

    def names_in(self, path: str) -> set[str]:
        """The task and group names one file of this folder defines at its top."""
        text = dict(self.texts()).get(path, b"")
        return {m.decode() for m in _NAME_LINE.findall(text)}


class _Static:
    """Entries known without a folder: the built-in suite before it is generated."""

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        self.root = None
        self._entries = dict(entries)
        self.unreadable: dict[str, str] = {}  # nothing here is parsed

    def lookup(self, names: set[str]) -> dict[str, Entry]:
        return {n: self._entries[n] for n in names if n in self._entries}

    def names(self) -> set[str]:
        return set(self._entries)


def builtin_entries() -> dict[str, Entry]:
    """The built-in suite's tasks and tag, as `write_builtin_suite` will write them."""
    entries = {
        name: Entry(name, Kind.TASK, None, task_config(name, Path(f"{name}.jsonl")))
        for name in BUILTIN_TASKS
    }
    entries["parammix_builtin"] = Entry("parammix_builtin", Kind.TAG, None, tags=set(entries))
    return entries


class TaskFinder:
    """Finds task, group and tag definitions in the user's folders first (the last one wins,
    as in lm-eval's index), then in lm-eval's own tasks."""

    def __init__(self, folders: Sequence[Path], builtin: bool = False) -> None:
        self.user = [_Folder(Path(f)) for f in reversed(folders)]
        if builtin:
            self.user.append(_Static(builtin_entries()))
        self.own = _Folder(lm_eval_tasks_dir())
        self._found: dict[str, Entry | None] = {}

    def find(self, names: Iterable[str]) -> dict[str, Entry | None]:
        todo = set(names) - set(self._found)
        for source in [*self.user, self.own]:
            if not todo:
                break
            hits = source.lookup(todo)
            self._found.update(hits)
            todo -= set(hits)
        self._found.update(dict.fromkeys(todo))
        return {n: self._found[n] for n in names}

    def unknown(self, name: str) -> str:
        """Why `name` was not found: a file of the user's naming it that lm-eval cannot read,
        else close matches and where it was looked for."""
        for folder in self.user:
            broken = [
                (path, why)
                for path, why in folder.unreadable.items()
                if name in folder.names_in(path)
            ]
            if broken:
                path, why = broken[0]
                return f"{name!r} is defined in {path}, which lm-eval cannot read ({why})"
        own = self.own.names()
        user = sorted(set().union(*(s.names() for s in self.user))) if self.user else []
        close = difflib.get_close_matches(name, [*user, *sorted(own - set(user))], 3, 0.6)
        where = [str(s.root) for s in self.user if s.root is not None]
        lines = [
            f"unknown lm-eval task {name!r}"
            + (f" - did you mean {', '.join(close)}?" if close else "")
        ]
        for folder in where:
            lines.append(f"available in {folder}: {', '.join(user) or 'nothing'}")
        lines.append(f"lm-eval knows {len(own)} tasks and groups of its own (`lm_eval ls tasks`)")
        return "\n    ".join(lines)


def folder_data_files(folder: str | Path) -> list[str]:
    """The `dataset_kwargs.data_files` that the task files under `folder` name (includes
    followed): data a user's tasks read from outside their folder."""
    root = Path(folder)
    if not root.is_dir():
        return []
    # every evaluation key asks: parse again only when a file of the folder changed
    stats = ((path, os.stat(path)) for path in sorted(_yaml_files(root)))
    state = tuple((path, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for path, st in stats)
    return list(_named_data_files(state))


@functools.lru_cache(maxsize=64)
def _named_data_files(state: tuple[tuple[str, int, int, int], ...]) -> tuple[str, ...]:
    """`folder_data_files` of the files in `state` (path, size, mtime, ctime)."""
    out: list[str] = []
    for path, *_ in state:
        try:
            cfg = load_yaml(path, resolve_func=False, recursive=True)
        except Exception:  # not a task file: lm-eval's index skips it too
            continue
        kwargs = cfg.get("dataset_kwargs") if isinstance(cfg, dict) else None
        out += data_file_paths(kwargs.get("data_files") if isinstance(kwargs, dict) else None)
    return tuple(out)


def data_file_paths(files: object) -> list[str]:
    """The paths in a `data_files` value: one path, a list, or splits of either."""
    if isinstance(files, str):
        return [files]
    if isinstance(files, Mapping):
        return [p for v in files.values() for p in data_file_paths(v)]
    if isinstance(files, (list, tuple)):
        return [p for v in files for p in data_file_paths(v)]
    return []
