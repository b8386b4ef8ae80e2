"""Shared pieces of the CLI: the Typer app, errors, settings and the `--as` person.

Import nothing heavy at module level (not even the settings): `copilot --help` loads this and every command
module, and must answer at once. Each command imports what it uses inside its function."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import typer

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(
    help="Sales Copilot: answers, drafts and CRM logging inside WeCom, DingTalk and email.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"copilot (sales-copilot) {version('sales-copilot')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("copilot (sales-copilot) unknown version: not installed (pip install -e .)")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code `code` (2 = bad usage or input)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load_settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    from bot.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CliError(f"bad setting COPILOT_{str(err['loc'][0]).upper()}: {err['msg']}") from None


def _configured(settings: Settings | None, logs: bool) -> Settings:
    from bot.ops.logs import configure, secret_values

    s = settings or load_settings()
    configure(s.log_level if logs else "WARNING", s.log_json, secret_values(s))
    return s


def _opening_errors() -> tuple[type[Exception], ...]:
    from rag.embed import EmbedderError
    from rag.index import ModelMismatch

    return ModelMismatch, EmbedderError


@contextmanager
def opened(settings: Settings | None = None, *, logs: bool = False, **build: Any) -> Iterator["App"]:  # noqa: F821
    """The whole copilot (see bot.app.build_app), closed on exit."""
    from bot.app import build_app

    s = _configured(settings, logs)
    try:
        app = build_app(s, **build)
    except _opening_errors() as exc:
        raise CliError(str(exc), 1) from None
    try:
        yield app
    finally:
        app.close()


@contextmanager
def opened_knowledge(settings: Settings | None = None) -> Iterator[tuple[Settings, "Knowledge", "Directory"]]:  # noqa: F821
    """Only the knowledge base (and the directory, for --as): what ingest, search and kb need."""
    from bot.app import open_database, open_knowledge
    from bot.people.directory import Directory

    s = _configured(settings, False)
    try:
        engine = open_database(s)
        knowledge = open_knowledge(s, engine)
    except _opening_errors() as exc:
        raise CliError(str(exc), 1) from None
    try:
        yield s, knowledge, Directory(engine)
    finally:
        knowledge.close()
        engine.dispose()


def person_for(settings: Settings, directory, rep_id: str | None, channel: str | None = None):
    """The person behind --as (an unknown id is an error); without --as: a rep with no team."""
    from bot.people.directory import DirectoryError, Person

    if rep_id is None:
        return Person("cli", "cli", "rep", "", settings.tenant, settings.timezone, "zh")
    if channel:
        p = directory.resolve(channel, settings.tenant, rep_id)
        if p is None:
            raise CliError(f"unknown user {rep_id!r} on channel {channel}: add it with `copilot reps add`")
        return p
    try:
        return directory.get(settings.tenant, rep_id)
    except DirectoryError as exc:
        raise CliError(str(exc)) from None


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
