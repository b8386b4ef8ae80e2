"""The `copilot` command. Usage errors exit 2 with one line; no traceback ever reaches the terminal."""
from __future__ import annotations

import logging
import sys

import click
import typer

from bot.cli.common import CliError, app
from bot.cli import bench, core, reps  # noqa: F401  (registers commands)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False, prog_name="copilot")
    except click.exceptions.NoArgsIsHelp as exc:  # bare group: help already printed
        sys.exit(0 if exc.ctx is None else 2)
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "copilot"
        print(f"{cmd}: error: {exc.format_message()} (see --help)", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        print(f"copilot: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CliError as exc:
        print(f"copilot: error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - one line, details in the log
        logging.getLogger("copilot").debug("unhandled", exc_info=True)
        print(f"copilot: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


__all__ = ["main", "typer"]
