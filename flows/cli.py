"""`parammix`: run the pipeline, show or check a config.

parammix run [--config FILE] [--set training.expert.steps=50 ...]
parammix show-config [--config FILE] [--set ...]
parammix validate-config FILE
parammix serve [--config FILE] [--set ...] [--weekly CRON] [--nightly CRON]
parammix import --ratios R.csv --metrics M.csv [--out rows.parquet] [--id-column NAME]
                [--sum-tolerance X | --renormalise] [--strip-prefix PREFIX]
parammix surrogate --train A.parquet --test B.parquet [--test C.parquet ...] [--metric NAME ...]
                   [--folds K] [--json]
parammix store list|verify|gc [--config FILE] [--set ...] [--older-than S] [--delete]
parammix export [--config FILE] [--set ...] (--chosen | --mixture D=W,...) --out DIR
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from flows import runs_cli, serve_cli, store_cli
from flows.cli_values import Parser, check_crons, positive, seed
from flows.debug_log import DebugLog, off_the_console, quiet_console
from parammix_core.config import (
    ConfigError,
    Experiment,
    apply_overrides,
    config_path,
    load_experiment,
)
from parammix_core.failure import STAGE, UsageError, describe
from parammix_core.paths import cache_root
from parammix_core.store import StoreError

QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # lm-eval draws a bar per task per candidate; our own progress bars opt back in.
    "TQDM_DISABLE": "1",
    # The first run with a fresh PREFECT_HOME migrates the temporary server's database: on a
    # small machine that takes longer than Prefect's default wait.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
}


def _load(args: argparse.Namespace) -> Experiment:
    exp = load_experiment(_config_file(args.config))
    return apply_overrides(exp, args.set or [], args.config or "<embedded default>")


def _config_file(config: str | None) -> str | Path | None:
    """The file as given, or a preset's (`micro`) for a bare name that is no file here, as a
    deployment's `config` parameter takes it; a bare name that is neither lists the presets."""
    if config is None or Path(config).exists():
        return config
    return config_path(config)


def cmd_show(args: argparse.Namespace) -> int:
    print(_load(args).to_yaml(), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    exp = load_experiment(_config_file(args.file))
    _preflight(exp, args.file)
    print(f"{args.file}: valid ({len(exp.domains)} domains: {', '.join(exp.domains)})")
    return 0


def _preflight(exp: Experiment, source: str) -> None:
    """`stages.preflight` before any server or training; an input it refuses is said as the
    stage `preflight` (a config's own errors name the file instead)."""
    from parammix_core.stages.preflight import preflight  # loads lm-eval: not for --help

    try:
        preflight(exp, source)
    except ConfigError:
        raise
    except Exception as err:
        setattr(err, STAGE, "preflight")
        raise


def cmd_run(args: argparse.Namespace) -> int:
    exp = _load(args)
    _preflight(exp, args.config or "<embedded default>")
    if args.verify:
        exp = apply_overrides(exp, ["runtime.verify_cached=true"], "--verify")

    import torch

    from flows.param_mix import param_mix
    from flows.server import check_api, prefect_api
    from parammix_core import stages
    from parammix_core.model import resolve_device
    from tasks.report import SUMMARY

    log_path = args.log.start()  # after Prefect set up its console handlers
    if log_path is None:  # the cache holds the build folders too: nothing would work
        raise UsageError(
            f"PARAMMIX_CACHE: cannot write in {cache_root()} (the debug log, build and staging "
            "folders go there); set PARAMMIX_CACHE to a writable folder"
        )

    check_api()  # an unreachable PREFECT_API_URL: said now, not after the store is made
    if exp.runtime.task_runner == "thread":  # tasks run here: a missing GPU fails now, not later
        try:
            resolve_device(exp.runtime.device)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if exp.store.credentials_block is None:  # a folder that is no store: refused before all
        _ = stages.open_store(exp).id
    torch.set_num_threads(exp.runtime.torch_threads)
    start = time.perf_counter()
    with _console(args), off_the_console(SUMMARY), prefect_api(log_path):
        try:
            refs = param_mix(exp)  # on the runner exp.runtime names
        except Exception as err:
            if not hasattr(err, STAGE):
                setattr(err, STAGE, "param-mix flow")
            raise
        took = time.perf_counter() - start
        lines = stages.summary(store_cli.config_store(exp, args.log), refs)  # the block's keys
    print()
    print(f"Param-Mix finished in {took:.0f} s")
    for line in lines:
        print(line)
    return 0


def _console(args: argparse.Namespace):
    """Terminal log lines without tracebacks (they are in the debug log), unless --debug."""
    return nullcontext() if args.debug else quiet_console()


def cmd_serve(args: argparse.Namespace) -> int:
    exp = _load(args)
    check_crons(weekly=args.weekly, nightly=args.nightly)
    _preflight(exp, args.config or "<embedded default>")  # else every served run fails alike
    return serve_cli.serve_flows(exp, args, _console(args))


def cmd_export(args: argparse.Namespace) -> int:
    exp = _load(args)
    from parammix_core.export import export_model, parse_mixture

    alpha = None if args.chosen else parse_mixture(args.mixture, exp.domains)
    done = export_model(exp, store_cli.config_store(exp, args.log), Path(args.out), alpha)
    print(f"mixture {', '.join(f'{d}={w:.4g}' for d, w in done.mixture.items())}: {done.source}")
    print(f"wrote {done.path}: config.json, safetensors, tokenizer, README.md, mergekit.yaml")
    return 0


def with_debug(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--debug", action="store_true", help="show tracebacks here, not only in the debug log"
    )


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="parammix", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            help="experiment YAML, or a preset name such as micro (default: the embedded default)",
        )
        sp.add_argument(
            "--set", action="append", metavar="PATH=VALUE", help="override one field, repeatable"
        )
        with_debug(sp)

    run = sub.add_parser("run", help="run the whole pipeline")
    with_config(run)
    run.add_argument(
        "--verify",
        action="store_true",
        help="re-hash (sha256) every stored artifact a stage would reuse instead of trusting "
        "the cache (runtime.verify_cached)",
    )
    run.set_defaults(func=cmd_run)
    show = sub.add_parser("show-config", help="print the resolved config as YAML")
    with_config(show)
    show.set_defaults(func=cmd_show)
    val = sub.add_parser("validate-config", help="check a config file and name any bad field")
    val.add_argument("file")
    with_debug(val)
    val.set_defaults(func=cmd_validate)
    srv = sub.add_parser(
        "serve", help="serve the flows as deployments from this process (runs start from the UI)"
    )
    with_config(srv)
    srv.add_argument(
        "--weekly", default="0 2 * * 0", metavar="CRON", help="full run ('none': no schedule)"
    )
    srv.add_argument(
        "--nightly",
        default="0 3 * * *",
        metavar="CRON",
        help="evaluate-mixtures, a no-op unless inputs changed ('none': no schedule)",
    )
    srv.add_argument(
        "--limit", type=positive, default=1, metavar="N", help="flow runs at once (1 to 1024)"
    )
    srv.set_defaults(func=cmd_serve)
    imp = sub.add_parser("import", help="validate and join mixture -> metric tables from elsewhere")
    imp.add_argument("--ratios", required=True, help="CSV: run id, one weight column per domain")
    imp.add_argument("--metrics", required=True, help="CSV: run id, one column per metric")
    imp.add_argument("--out", help="write the joined table as parquet")
    imp.add_argument(
        "--id-column",
        default="run_id",
        metavar="NAME",
        help="the column holding the run id in both tables (default run_id; e.g. index)",
    )
    sums = imp.add_mutually_exclusive_group()
    sums.add_argument(
        "--sum-tolerance",
        default="0.001",
        metavar="X",
        help="how far from 1 a row's weights may sum; such rows are scaled to 1 (default 0.001)",
    )
    sums.add_argument(
        "--renormalise",
        action="store_true",
        help="accept any positive row sum and scale each row to 1 (rounded published tables); "
        "a warning names the row furthest from 1",
    )
    imp.add_argument(
        "--strip-prefix",
        metavar="PREFIX",
        help="remove PREFIX from every weight column to name the domain (ratio_math -> math)",
    )
    with_debug(imp)
    imp.set_defaults(func=runs_cli.cmd_import)
    sur = sub.add_parser("surrogate", help="score LightGBM and linear surrogates on held-out runs")
    sur.add_argument("--train", required=True, help="joined table (parquet) to fit on")
    sur.add_argument(
        "--test",
        required=True,
        action="append",
        help="joined table (parquet) to score on; repeatable (fitted once, each table scored)",
    )
    sur.add_argument("--metric", action="append", help="metric column, repeatable (default: all)")
    sur.add_argument(
        "--folds", type=int, default=5, help="CV folds on the train table (2 to its rows)"
    )
    sur.add_argument("--seed", type=seed, default=0, help="seed of the fits (0 to 2**32 - 1)")
    sur.add_argument(
        "--json", action="store_true", help="print one JSON object: train CV and test scores"
    )
    with_debug(sur)
    sur.set_defaults(func=runs_cli.cmd_surrogate)
    exp = sub.add_parser("export", help="a mixture's merged model as a transformers checkpoint")
    with_config(exp)
    which = exp.add_mutually_exclusive_group(required=True)
    which.add_argument("--chosen", action="store_true", help="the mixture the run chose")
    which.add_argument(
        "--mixture",
        metavar="D=W,...",
        help="e.g. math=0.5,code=0.3,sft=0.2: summing to 1, an omitted domain weighs 0",
    )
    exp.add_argument("--out", required=True, help="a new or empty folder to write it to")
    exp.set_defaults(func=cmd_export)
    store_cli.add_parser(sub, with_config)
    sub.choices["store"].set_defaults(func=cmd_store)
    return p


def cmd_store(args: argparse.Namespace) -> int:
    return args.store_func(_load(args), args)


# Commands that write outside the store (`--out`) in the main thread alone: SIGTERM unwinds
# them, so the temporary file or folder they were filling is removed.
UNWOUND = ("export", "import")


class Terminated(BaseException):
    """SIGTERM in an UNWOUND command."""


def _terminated(unwind: bool, signum: int, frame: Any) -> None:
    """SIGTERM (`kill`, `docker stop`, a worker cancelling): the contract's one line, then out.
    Prefect's engine marks a running flow crashed first and re-sends the signal here. A flow
    exits at once, not unwinding: the main thread would wait for the training threads to
    finish. Finished stages are in the store (written atomically); a rerun resumes from them."""
    from flows.server import signal_servers

    signal_servers()
    if unwind:
        raise Terminated
    print("error: terminated (SIGTERM); finished stages are kept in the store", file=sys.stderr)
    sys.stderr.flush()
    os._exit(143)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.log = DebugLog()
    cache = cache_root()
    if cache.exists() and not cache.is_dir():  # before matplotlib tries a folder in it
        print(
            f"error: PARAMMIX_CACHE: cannot write in {cache} (a file, not a folder; the debug "
            "log, build and staging folders go there); set PARAMMIX_CACHE to a writable folder",
            file=sys.stderr,
        )
        return 2
    for k, v in QUIET_ENV.items():  # every command: a store command may start Prefect too
        os.environ.setdefault(k, v)
    os.environ.setdefault("MPLCONFIGDIR", str(cache_root() / "matplotlib"))  # not ~/.config
    warnings.formatwarning = _one_line
    main_thread = threading.current_thread() is threading.main_thread()  # else the embedder's
    handler = functools.partial(_terminated, args.command in UNWOUND)
    previous = signal.signal(signal.SIGTERM, handler) if main_thread else None
    try:
        return args.func(args)
    except Terminated:
        msg = f"error: {args.command}: terminated (SIGTERM); its unfinished output was removed"
        print(msg, file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        kept = "; finished stages are kept in the store: the same command resumes from them"
        said = f"error: {args.command}: interrupted (Ctrl-C)"
        print(said + (kept if args.command == "run" else ""), file=sys.stderr)
        return 130
    except Exception as err:  # the contract: one line, exit 2, the traceback in the log
        return _fail(err, args)
    finally:
        args.log.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    """A warning as the user reads it: what, not the source file and line it came from."""
    return f"warning: {message}\n"


def _expected(err: BaseException) -> bool:
    """A refusal of ours (a bad config, table, store, mixture, output folder): the one-line
    error says it all, no traceback is logged. Anything else may be a bug: it is logged."""
    ours = type(err).__module__.split(".")[0] in ("parammix_core", "flows", "tasks")
    return ours and isinstance(err, ValueError | StoreError)


def _fail(err: BaseException, args: argparse.Namespace) -> int:
    logged = args.log.path is not None or not _expected(err)
    path = args.log.record(err) if logged else None
    print(f"error: {describe(err)}", file=sys.stderr)
    if args.debug:
        traceback.print_exception(err, file=sys.stderr)
    elif path is not None:
        print(f"  details: {path} (or run again with --debug)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
