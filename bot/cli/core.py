"""serve, ingest, search, ask, chat, doctor."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from bot.cli.common import CliError, _configured, app, emit, load_settings, opened, opened_knowledge, person_for
from bot.cli.workers import run_workers


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8080)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes serving this port (PostgreSQL recommended beyond 1)."),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True, help="Share the port with other processes (--workers)."),
) -> None:
    """Run the gateway, the workers and every configured channel; ingest the bundled knowledge on first start.
    Ctrl-C or SIGTERM stops it gracefully: the messages in flight get COPILOT_SHUTDOWN_GRACE seconds (default 10)
    to finish; the rest stay in the durable inbox and resume at the next start. --workers: bot/cli/workers.py."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from bot.web.gateway import create_web_app

    if workers > 1:
        raise typer.Exit(run_workers(workers, (s := load_settings(host=host, port=port)).host, s.port))
    s = _configured(load_settings(host=host, port=port), True)  # logging first: the sign-in check below opens the database
    link = _sign_in_ready(s)  # before anything heavy: a public address without sign-in is refused at once
    grace = max(0.0, s.shutdown_grace)
    loop = asyncio.new_event_loop()
    # blocking work (model calls, embedding, SQL) runs on these threads; at exit they get the grace, not forever
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=WORK_THREADS))
    asyncio.set_event_loop(loop)
    try:
        with opened(s, logs=True, platforms=True) as cp:
            _first_start(cp)
            if link:
                _admin_link(cp)
            application = create_web_app(cp)
            unfinished, deadline = loop.run_until_complete(_serve(cp, application, s, grace, reuse_port))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # does not wait for the executor's threads
    busy = [t for t in threading.enumerate() if t.name.startswith(WORK_THREADS) and t.is_alive()]
    for t in busy:
        t.join(max(0.0, deadline - time.monotonic()))
    if unfinished:
        typer.echo(f"stopped: {unfinished} message{'' if unfinished == 1 else 's'} unfinished; "
                   f"{'it resumes' if unfinished == 1 else 'they resume'} at the next start.", err=True)
    else:
        typer.echo("stopped: every message in flight finished.", err=True)
    if any(t.is_alive() for t in busy):  # a call that outlived the grace (its message resumes at the next start)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


WORK_THREADS = "copilot-work"


async def _serve(cp, application, s, grace: float, reuse_port: bool = False) -> tuple[int, float]:
    """Serve until Ctrl-C or SIGTERM, then drain for at most `grace` s. Returns (unfinished messages, deadline)."""
    import signal
    import time

    from aiohttp import web

    runner = web.AppRunner(application, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()  # starts the app (workers, outbox, channels)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        site = web.TCPSite(runner, s.host, s.port, reuse_port=reuse_port or None)
        await site.start()
        typer.echo(f"Web chat: {s.base_url}/", err=True)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for sig in signals:  # a second Ctrl-C stops at once (exit 130)
            loop.remove_signal_handler(sig)
        deadline = time.monotonic() + grace
        n = cp.dispatcher.in_flight()
        typer.echo(f"stopping: finishing {n} message{'' if n == 1 else 's'} in flight (at most {grace:g} s)…", err=True)
        await site.stop()  # no new connections
        unfinished = await cp.drain(grace)
    finally:
        try:  # the web app's cleanup stops the app (channels, workers, outbox); bounded, like the drain
            await asyncio.wait_for(runner.cleanup(), timeout=5.0)
        except asyncio.TimeoutError:
            typer.echo("  (the channels did not close in 5 s; stopping anyway)", err=True)
    return unfinished, deadline


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _sign_in_ready(s) -> bool:
    """Whether this start prints a one-time admin link (no admin has a password yet). On an address other
    than loopback that is refused: anyone who can reach it would meet an unprotected first sign-in."""
    from bot.cli.user import opened_auth

    with opened_auth(s) as (_, auth):
        configured = auth.has_admin_password(s.tenant)
    if not configured and not _is_loopback(s.host):
        raise CliError(f"refusing to listen on {s.host}: sign-in is not configured (no admin has a password yet). "
                       "Set one first: `copilot user add admin --role admin --password-stdin`, or serve on 127.0.0.1.")
    return not configured


def _admin_link(cp) -> None:
    """No admin has a password yet: a one-time sign-in link for a local admin (like a notebook server's token URL)."""
    from bot.auth.service import AuthError

    s = cp.settings
    admins = cp.directory.by_role(s.tenant, "admin")
    try:
        admin = admins[0] if admins else cp.auth.add_user("admin", "admin", s.tenant)
    except AuthError as exc:
        raise CliError(f"cannot create the local admin: {exc}", 1) from None
    token = cp.auth.one_time_token(s.tenant, admin.id)
    typer.echo(f"Sign in as {admin.id} (admin) with this one-time link, valid once for {s.signin_link_minutes:g} min:\n"
               f"  {s.base_url}/login?token={token}\n"
               f"  then set a password: copilot user add {admin.id} --role admin --password-stdin", err=True)


def _first_start(cp) -> None:
    """Demo mode (COPILOT_DEMO=true, as `make run` sets) on an empty data dir: the sample users, CRM records and
    knowledge, so everything works at once. Otherwise the copilot starts empty."""
    if not cp.needs_samples():
        return
    if not cp.settings.demo:
        typer.echo("Starting with an empty knowledge base: add documents with `copilot ingest PATH`, people with "
                   "`copilot user add` (COPILOT_DEMO=true loads the sample people and knowledge instead).", err=True)
        return
    if not cp.settings.knowledge_dir.is_dir():  # installed from a wheel: the sample knowledge stays in the source tree
        typer.echo(f"No sample knowledge at {cp.settings.knowledge_dir}: starting with an empty knowledge base "
                   "(add documents with `copilot ingest PATH`, users with `copilot reps add`).", err=True)
        return
    typer.echo(f"First start: loading sample users and CRM data, ingesting {cp.settings.knowledge_dir} ...", err=True)
    with _progress("embedding passages") as tick:
        summary = cp.load_samples(progress=tick)
    typer.echo(f"Ready: {summary['reps']} users, {summary['documents']} documents.", err=True)
    for e in summary["errors"]:
        typer.echo(f"  not ingested: {e['name']}: {e['reason']}", err=True)


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Files or folders (md, txt, html, pdf, docx, csv, xlsx, pptx)."),
    audience: Optional[str] = typer.Option(None, help="all | sales | managers (overrides the documents' front matter)."),
    as_: Optional[str] = typer.Option(None, "--as", help="Ingest as this user (a rep's upload becomes a draft)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per file."),
) -> None:
    """Ingest documents into the knowledge base (unchanged content is not re-embedded)."""
    from rag.ingest import Uploader, expand
    from rag.store import audience_roles

    if audience is not None:
        try:
            audience_roles(audience)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or folder: {', '.join(missing)}")
    with opened_knowledge() as (settings, knowledge, directory):
        who = person_for(settings, directory, as_) if as_ else None
        uploader = Uploader(who.id, who.role, who.tenant) if who else Uploader("cli", "admin", settings.tenant)

        def on_file(r) -> None:
            if as_json:
                emit(r.to_json())
            elif r.status == "error":
                typer.echo(f"✗ {r.name}: {r.reason}", err=True)
            else:
                typer.echo(f"{'✓' if r.status != 'draft' else '…'} {r.name}: {r.status} {r.doc_id} v{r.version} ({r.chunks} chunks, {r.embedded} embedded)")

        with _progress("embedding passages", enabled=not as_json, files=len(expand(paths))) as tick:
            def on_file_done(r) -> None:
                on_file(r)
                tick.file_done()

            results = knowledge.ingestor.ingest_paths(paths, uploader, audience=audience, on_file=on_file_done, progress=tick)
    bad = sum(r.status == "error" for r in results)
    if not as_json:
        typer.echo(f"{len(results) - bad} ingested, {bad} refused", err=True)
    if bad:
        raise typer.Exit(1)


def _batch_lines(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get("q"), str) or not obj["q"].strip():
                    raise ValueError("each line needs a non-empty string 'q'")
                yield n, obj, ""
            except ValueError as exc:
                yield n, None, str(exc)


def _run_batch(settings, directory, path: Path, run) -> None:
    from bot.people.directory import DirectoryError

    for n, obj, err in _batch_lines(path):
        rid = obj.get("id", n) if obj else n
        if obj is None:
            emit({"id": rid, "error": f"line {n}: {err}"})
            continue
        try:
            person = person_for(settings, directory, obj.get("as"))
            emit({"id": rid, **run(obj["q"], person)})
        except (CliError, DirectoryError) as exc:
            emit({"id": rid, "error": str(exc)})


@app.command()
def search(
    query: Optional[str] = typer.Argument(None, help="What to look for."),
    as_: Optional[str] = typer.Option(None, "--as", help="Search as this user (their permissions)."),
    channel: Optional[str] = typer.Option(None, help="Resolve --as as a user id on this channel (default: the rep id)."),
    k: int = typer.Option(10, "-k", min=1, max=100, help="Number of hits."),
    per_doc: int = typer.Option(1, "--per-doc", min=1, max=20, help="Passages per document."),
    mode: str = typer.Option("hybrid", help="hybrid | dense | bm25"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    batch: Optional[Path] = typer.Option(None, help="JSONL file of {id, q, as}: one JSON result line each."),
) -> None:
    """Search the knowledge base (JSON hits: doc_id, title, chunk_id, score, snippet, source, version)."""
    from bot.agent import viewer_of

    if mode not in ("hybrid", "dense", "bm25"):
        raise CliError("--mode must be hybrid, dense or bm25")
    if (query is None) == (batch is None):
        raise CliError("give a query or --batch FILE (not both)")
    with opened_knowledge() as (settings, knowledge, directory):
        def run(q: str, person) -> dict:
            hits = knowledge.retriever.search(q, viewer_of(person), k=k, per_doc=per_doc, mode=mode)
            return {"hits": [h.public() for h in hits]}

        if batch is not None:
            _run_batch(settings, directory, batch, run)
            return
        hits = run(query, person_for(settings, directory, as_, channel))["hits"]
        if as_json:
            emit(hits)
            return
        if not hits:
            typer.echo("no results")
        for i, h in enumerate(hits, 1):
            typer.echo(f"{i}. {h['title']} [{h['doc_id']} v{h['version']}] {h['heading']}  score={h['score']} rel={h['relevance']}")
            typer.echo(f"   {h['snippet']}")


@app.command()
def ask(
    question: Optional[str] = typer.Argument(None, help="A product or competitor question."),
    as_: Optional[str] = typer.Option(None, "--as", help="Ask as this user (their permissions)."),
    channel: Optional[str] = typer.Option(None, help="Resolve --as as a user id on this channel (default: the rep id)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON {answer, citations, grounded}."),
    batch: Optional[Path] = typer.Option(None, help="JSONL file of {id, q, as}: one JSON result line each."),
) -> None:
    """Answer from the knowledge base with citations, or say honestly that it is not there."""
    from bot.agent import viewer_of

    if (question is None) == (batch is None):
        raise CliError("give a question or --batch FILE (not both)")
    with opened() as cp:
        def run(q: str, person) -> dict:
            return cp.agent.answerer.answer(q, viewer_of(person)).to_json()

        if batch is not None:
            _run_batch(cp.settings, cp.directory, batch, run)
            return
        out = run(question, person_for(cp.settings, cp.directory, as_, channel))
        if as_json:
            emit(out)
            return
        typer.echo(out["answer"])
        for i, c in enumerate(out["citations"], 1):
            typer.echo(f"[{i}] {c['title']} ({c['doc_id']} v{c['version']})")


@app.command()
def chat(
    as_: str = typer.Option(..., "--as", help="Chat as this user."),
    channel: Optional[str] = typer.Option(None, help="Resolve --as on this channel (default console)."),
) -> None:
    """Chat in the terminal through the same inbox, workers and outbox as every channel."""
    from connectors.local.terminal import TerminalConnector
    from connectors.message import conversation_key

    settings = load_settings()
    term = TerminalConnector(lambda text: print(f"\ncopilot> {text}\n", flush=True))
    # nudges belong to `copilot serve`; this terminal delivers only its own conversation (a running
    # `serve` delivers everything else)
    conv = f"cli-{as_}"
    with opened(settings, channels=[term], proactive=False, deliver_only={conversation_key("console", settings.tenant, conv)}) as cp:
        _first_start(cp)
        person = person_for(cp.settings, cp.directory, as_, channel)
        asyncio.run(_chat(cp, person, term, conv))


async def _chat(cp, person, term, conv: str) -> None:
    import uuid

    from connectors.message import InboundMessage

    await cp.start()
    ident = next((i.platform_user_id for i in cp.directory.identities(person.id) if i.channel == "console"), person.id)
    print(f"Chatting as {person.name} ({person.role}). /help for commands, Ctrl-D to quit.", file=sys.stderr)
    try:
        while True:
            line = await asyncio.to_thread(_read_line)
            if line is None:
                break
            if not line.strip():
                continue
            term.delivered.clear()
            await cp.intake.sink(InboundMessage(channel="console", tenant=cp.settings.tenant, conversation_id=conv, sender_id=ident,
                                         sender_name=person.name, text=line, platform_msg_id=uuid.uuid4().hex))
            try:
                await asyncio.wait_for(term.delivered.wait(), timeout=120)
                await asyncio.sleep(0.2)  # let multi-part replies arrive
            except asyncio.TimeoutError:
                print("(still working; the answer will appear when ready)", file=sys.stderr)
    finally:
        await cp.aclose()


def _read_line() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check configuration, stores, the model and every configured channel; say how to fix what is wrong."""
    from bot.doctor import run_checks

    checks = asyncio.run(run_checks(load_settings()))
    if as_json:
        emit([c.__dict__ for c in checks])
    else:
        for c in checks:
            typer.echo(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail}")
            if not c.ok and c.fix:
                typer.echo(f"    fix: {c.fix}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


class _Tick:
    def __init__(self, progress, task, files_task=None) -> None:
        self.progress, self.task, self.files_task = progress, task, files_task

    def __call__(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n)

    def file_done(self) -> None:
        if self.progress is not None and self.files_task is not None:
            self.progress.update(self.files_task, advance=1)


@contextmanager
def _progress(label: str, enabled: bool = True, files: int | None = None) -> Iterator[_Tick]:
    """A rich progress bar on a terminal (a count of `label`, and a bar of `files` when given); silent when piped."""
    if not enabled or not sys.stderr.isatty():
        yield _Tick(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as p:
        files_task = p.add_task("files", total=files) if files is not None else None
        yield _Tick(p, p.add_task(label, total=None), files_task)
