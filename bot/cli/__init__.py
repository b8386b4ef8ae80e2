"""The `copilot` command. Usage errors exit 2 with one line; no traceback ever reaches the terminal."""
from __future__ import annotations

import logging
import sys

import click
import typer

from bot.cli import core, crm, email, inbox, kb, report, reps, user, wecom  # noqa: F401  (registers commands)
from bot.cli.common import CliError, app


def _errors(*names: str) -> tuple[type[BaseException], ...]:
    """The click exception classes called `names`, from click and from the copy of click that newer
    typer releases vendor (their exceptions are not click's), under old and new names alike."""
    modules = [click.exceptions]
    try:
        import typer._click.exceptions as vendored

        modules.append(vendored)
    except ImportError:
        pass
    found = tuple(getattr(m, n) for m in modules for n in names if isinstance(getattr(m, n, None), type))
    return found or (type("NeverRaised", (Exception,), {}),)


NO_ARGS, USAGE = _errors("NoArgsIsHelp", "NoArgsIsHelpError"), _errors("UsageError")
EXIT, ABORT = _errors("Exit") + (typer.Exit,), _errors("Abort") + (typer.Abort,)
CLICK_ERROR = _errors("ClickException")


def main(argv: list[str] | None = None) -> None:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="copilot")
        if isinstance(rv, int) and not isinstance(rv, bool) and rv:
            sys.exit(rv)  # typer.Exit(n) comes back as a return value when standalone_mode is off
    except NO_ARGS as exc:  # a bare group: its help (newer click leaves the printing to us)
        if hasattr(exc, "format_message") and type(exc).__name__.endswith("Error"):
            print(exc.format_message())
        sys.exit(0 if not (sys.argv[1:] if argv is None else argv) else 2)
    except USAGE as exc:
        cmd = exc.ctx.command_path if exc.ctx else "copilot"
        print(f"{cmd}: error: {exc.format_message()} (see --help)", file=sys.stderr)
        sys.exit(2)
    except EXIT as exc:
        sys.exit(exc.exit_code)
    except ABORT:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except CLICK_ERROR as exc:
        print(f"copilot: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CliError as exc:
        print(f"copilot: error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("copilot").debug("unhandled", exc_info=True)
        from bot.ops.logs import Redactor, secret_values

        print(f"copilot: internal error: {type(exc).__name__}: {Redactor(secret_values())(str(exc))}", file=sys.stderr)
        sys.exit(1)


__all__ = ["main", "typer"]
