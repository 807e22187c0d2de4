"""`parammix serve`: the flows served as deployments from this process (runs start from the
UI), against the Prefect server PREFECT_API_URL names."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from flows.debug_log import NO_TRACEBACKS_ENV
from parammix_core.config import Experiment


def served_deployments(
    exp: Experiment,
    weekly: str,
    nightly: str,
    config: str | None = None,
    sets: list[str] | None = None,
) -> list[Any]:
    """The flows as deployments of this process. Their default parameters are the config
    file and overrides given (a short run form, the file read when a run starts), or the whole
    experiment when it came from elsewhere."""
    from flows.evaluate_mixtures import evaluate_mixtures
    from flows.param_mix import param_mix
    from flows.refit import refit_surrogates

    params: dict[str, Any] = {"overrides": list(sets or [])}
    if config is not None:  # a preset's name stays a name: a run resolves it where it runs
        params["config"] = str(Path(config).resolve()) if Path(config).exists() else config
    tags = ["parammix", exp.name]
    deployments = [
        param_mix.to_deployment("served", parameters=params, tags=tags),
        refit_surrogates.to_deployment("served", parameters=params, tags=tags),
        evaluate_mixtures.to_deployment("served", parameters=params, tags=tags),
    ]
    if weekly != "none":
        deployments.append(
            param_mix.to_deployment("served-weekly", parameters=params, cron=weekly, tags=tags)
        )
    if nightly != "none":
        deployments.append(
            evaluate_mixtures.to_deployment(
                "served-nightly", parameters=params, cron=nightly, tags=tags
            )
        )
    return deployments


def serve_flows(
    exp: Experiment, args: argparse.Namespace, console: AbstractContextManager[Any]
) -> int:
    """Serve until Ctrl-C or SIGTERM; a server that is not set or does not answer is one
    error line. Either signal cancels the runs this process started; exit 130 or 143, as
    `run`'s."""
    from prefect.settings import get_current_settings

    from flows.served_runner import serve
    from flows.server import check_api

    if not get_current_settings().api.url:
        print(
            "error: serve: PREFECT_API_URL is not set; served deployments need a lasting "
            "server: start one (`prefect server start`) and set PREFECT_API_URL (e.g. "
            "http://127.0.0.1:4200/api)",
            file=sys.stderr,
        )
        return 2
    check_api(temporary=False)
    if exp.store.credentials_block is None:  # a folder that is no store: refused, not served
        from parammix_core import stages

        _ = stages.open_store(exp).id
    import torch

    torch.set_num_threads(exp.runtime.torch_threads)
    args.log.start()  # the runs' tracebacks go there; their one-line logs to the terminal
    if not args.debug:  # the flow-run processes Prefect starts: tracebacks to the UI only
        os.environ[NO_TRACEBACKS_ENV] = "0"
    deployments = served_deployments(exp, args.weekly, args.nightly, args.config, args.set)
    print(serving(deployments, get_current_settings().api.url), flush=True)
    with console:
        runner = serve(deployments, args.limit)
    if runner.stopped_by is None:
        return 0
    how = "terminated (SIGTERM)" if runner.stopped_by == "SIGTERM" else "interrupted (Ctrl-C)"
    done = (
        "stopped at once by a second signal: a flow run it had started may show Running in the "
        "UI until cancelled there"
        if runner.at_once
        else "the flow runs it had started were cancelled and its schedules paused "
        "(`parammix serve` again resumes them)"
    )
    print(f"error: serve: {how}; {done}", file=sys.stderr)
    return 143 if runner.stopped_by == "SIGTERM" else 130


def serving(deployments: list[Any], api_url: str) -> str:
    """What the terminal shows once: the deployments by the names `prefect deployment run`
    takes, and how to stop."""
    names = [d.full_name for d in deployments]
    return (
        f"serving {len(names)} deployments on {api_url}: {', '.join(names)}\n"
        f"  start a run from the UI, or: prefect deployment run '{names[0]}'\n"
        "  Ctrl-C or SIGTERM stops serving (runs started here are cancelled)"
    )
