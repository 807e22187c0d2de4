"""`parammix store list|verify|gc`: look after the artifact store of a config.

parammix store list   [--config FILE] [--set ...]
parammix store verify [--config FILE] [--set ...]
parammix store gc     [--config FILE] [--set ...] [--older-than SECONDS] [--delete]
"""

from __future__ import annotations

import argparse

from flows.debug_log import DebugLog
from parammix_core.config import Experiment
from parammix_core.store import StoreError
from parammix_core.store_admin import collect, find_garbage, list_artifacts, verify_all


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def config_store(exp: Experiment, log: DebugLog):
    """The config's store; Prefect is loaded only when a credentials block is named, and its
    temporary server (when no API is set) writes to the debug log, not the terminal."""
    if exp.store.credentials_block is None:
        # imported here: parammix_core.stages loads torch and transformers (seconds)
        from parammix_core.stages.common import open_store

        return open_store(exp)
    from flows.server import prefect_api
    from tasks.common import open_store as with_block  # Prefect only when a block is named

    path = log.start()
    if path is None:  # no debug log: Prefect's own temporary server, lines and all
        return with_block(exp)
    with prefect_api(path):
        return with_block(exp)


def cmd_list(exp: Experiment, args: argparse.Namespace) -> int:
    rows, damaged = list_artifacts(config_store(exp, args.log))
    print(f"{'stage':<11} {'config hash':<13} {'size':>10}  {'created':<20}  path")
    for r in rows:
        line = f"{r['stage']:<11} {r['config_hash']:<13} {_size(r['bytes']):>10}  "
        print(line + f"{r['created']:<20}  {r['path']}")
    for path, err in damaged:
        print(f"DAMAGED  {path}: {_within(path, err)}")
    extra = f", {len(damaged)} damaged (parammix store verify)" if damaged else ""
    print(f"{len(rows)} artifact(s), {_size(sum(r['bytes'] for r in rows))}{extra}")
    return 0


def cmd_verify(exp: Experiment, args: argparse.Namespace) -> int:
    results = verify_all(config_store(exp, args.log))
    bad = [(p, e) for p, e in results if e is not None]
    for path, err in bad:
        print(f"BAD  {path}: {_within(path, err)}")
    print(f"{len(results) - len(bad)} intact, {len(bad)} damaged (sha256 of every file)")
    return 1 if bad else 0


def _within(path: str, err: object) -> str:
    """An artifact's error without its path, which the line already starts with."""
    text = str(err).removeprefix(f"{path}: ")
    return text.removeprefix(f"{path}/")


def cmd_gc(exp: Experiment, args: argparse.Namespace) -> int:
    if not args.older_than >= 0:  # nan too: it compares false with every age
        raise StoreError(f"--older-than {args.older_than:g}: must be 0 or more seconds")
    store = config_store(exp, args.log)
    found = find_garbage(store, args.older_than)
    for item in found:
        print(f"{_size(item.bytes):>10}  {item.path}  ({item.reason})")
    garbage = [i for i in found if i.deletable]
    total = _size(sum(i.bytes for i in garbage))
    if not args.delete:
        print(f"{len(garbage)} leftover(s), {total}: dry run, nothing deleted (--delete deletes)")
        return 0
    freed = collect(store, garbage)
    print(f"deleted {len(garbage)} leftover(s), {_size(freed)}")
    return 0


def add_parser(sub: argparse._SubParsersAction, with_config) -> None:
    """Register `parammix store ...` on the main parser."""
    store = sub.add_parser("store", help="list, verify or garbage-collect the artifact store")
    actions = store.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    for name, func, text in (
        ("list", cmd_list, "published artifacts with their stage and config hash"),
        ("verify", cmd_verify, "re-hash every artifact against its manifest"),
        ("gc", cmd_gc, "leftovers of crashed writes (dry run unless --delete)"),
    ):
        sp = actions.add_parser(name, help=text)
        with_config(sp)
        sp.set_defaults(store_func=func)
        if name == "gc":
            sp.add_argument(
                "--older-than",
                type=float,
                default=3600.0,
                metavar="SECONDS",
                help="only leftovers untouched this many seconds (default 3600)",
            )
            sp.add_argument("--delete", action="store_true", help="delete them")
