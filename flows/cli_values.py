"""Command-line values checked beyond argparse's types: each failure names its option on one
`error:` line, as every other refusal of the CLI does."""

from __future__ import annotations

import argparse
from typing import NoReturn

from parammix_core.failure import UsageError


class Parser(argparse.ArgumentParser):
    """argparse failing as every command does: one `error:` line naming the option, exit 2
    (argparse prints the usage first; `--help` shows it). Subcommands inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def seed(raw: str) -> int:
    """A seed numpy and LightGBM accept."""
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number from 0 to 2**32 - 1")
    return value


def positive(raw: str) -> int:
    """A count of at least one (`serve --limit`): 0 would serve flows that never run."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number from 1 to 1024")
    return value


def check_crons(**crons: str) -> None:
    """Each schedule a cron expression Prefect accepts, or 'none'; else the option is named."""
    from prefect.client.schemas.schedules import CronSchedule  # Prefect: not for --help
    from pydantic import ValidationError

    for option, cron in crons.items():
        if cron == "none":
            continue
        try:
            CronSchedule(cron=cron)
        except ValidationError:
            raise UsageError(
                f"--{option} {cron!r}: not a cron expression (e.g. '0 2 * * 0'), or 'none'"
            ) from None
