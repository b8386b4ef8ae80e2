"""copilot kb versions | drafts | approve | reject | retire | report | rebuild | reembed | nudge-owners | rotate-links."""
from __future__ import annotations

from datetime import date
from typing import Optional

import typer

from bot.cli.common import CliError, app, emit, load_settings, opened, person_for

kb = typer.Typer(help="The knowledge base: versions, the publishing workflow, freshness and use.", no_args_is_help=True)
app.add_typer(kb, name="kb")


def _doc_versions(cp, doc_id: str):
    from rag.versions import versions as history

    found = history(cp.engine, cp.settings.tenant, doc_id)
    if found is None:
        raise CliError(f"no document {doc_id!r} (see `copilot search` for ids)")
    return found


@kb.command("versions")
def versions(doc_id: str = typer.Argument(..., help="Document id."), as_json: bool = typer.Option(False, "--json")) -> None:
    """Every version of a document: the live one is served, old ones are kept for audit only."""
    with opened() as cp:
        doc, vers = _doc_versions(cp, doc_id)
    rows = [{"version_id": v.id, "version": v.version, "status": v.status, "updated": v.updated, "chunks": v.n_chunks,
             "ingested_at": v.ingested_at.isoformat(timespec="seconds"), "by": v.ingested_by, "approved_by": v.approved_by} for v in vers]
    if as_json:
        emit(rows)
        return
    for r in rows:
        typer.echo(f"#{r['version_id']:<5} v{r['version']:<6} {r['status']:<10} updated {r['updated']}  {r['chunks']} chunks  "
                   f"by {r['by']} {r['ingested_at']}" + (f"  approved by {r['approved_by']}" if r["approved_by"] else ""))


@kb.command("drafts")
def drafts(as_json: bool = typer.Option(False, "--json")) -> None:
    """Uploaded content waiting for approval (never served until approved)."""
    from rag.versions import drafts as waiting

    with opened() as cp:
        rows = waiting(cp.engine, cp.settings.tenant)
    out = [{"version_id": v.id, "doc_id": d, "title": v.title, "version": v.version, "by": v.ingested_by,
            "ingested_at": v.ingested_at.isoformat(timespec="seconds")} for v, d in rows]
    if as_json:
        emit(out)
        return
    for r in out:
        typer.echo(f"#{r['version_id']:<5} {r['doc_id']} v{r['version']} 《{r['title']}》 by {r['by']} {r['ingested_at']}")
    if not out:
        typer.echo("no drafts")


def _decide(version_id: int, as_: str, approve: bool) -> None:
    with opened() as cp:
        reply = cp.publishing.decide(person_for(cp, as_), version_id, approve)
    if reply.kind == "error" or not reply.meta.get("decision"):

        raise CliError(reply.text, 1)
    typer.echo(reply.text)


@kb.command("approve")
def approve(version_id: int = typer.Argument(..., help="Draft version id (see `kb drafts`)."),
            as_: str = typer.Option(..., "--as", help="The approver: an enablement, manager or admin user.")) -> None:
    """Publish a draft (atomically replaces the live version)."""
    _decide(version_id, as_, True)


@kb.command("reject")
def reject(version_id: int = typer.Argument(...), as_: str = typer.Option(..., "--as", help="The approver.")) -> None:
    """Reject a draft (kept for audit, never served)."""
    _decide(version_id, as_, False)


@kb.command("retire")
def retire(doc_id: str = typer.Argument(...)) -> None:
    """Stop serving a document; its versions stay for audit."""
    with opened() as cp:
        if not cp.knowledge.ingestor.retire(cp.settings.tenant, doc_id):
            raise CliError(f"{doc_id} is not live")
    typer.echo(f"retired {doc_id}")


@kb.command("report")
def report(as_json: bool = typer.Option(False, "--json"), stale_days: Optional[int] = typer.Option(None, help="Flag content older than this (default 90)."),
           flagged: bool = typer.Option(False, help="Only flagged documents.")) -> None:
    """Per document: owner, age, expiry, times served and cited, feedback, and flags."""
    from rag.report import content_report

    s = load_settings()
    with opened(s) as cp:
        rows = content_report(cp.engine, s.tenant, date.today(), stale_days=stale_days or s.stale_days)
    rows = [r for r in rows if r.flags] if flagged else rows
    if as_json:
        emit([r.to_json() for r in rows])
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("doc", "owner", "v", "updated", "age", "expires", "served 30d", "cited 30d", "👍/👎", "flags")
    for r in rows:
        t.add_row(r.doc_id, r.owner, r.version, r.updated, str(r.age_days), r.expires or "", str(r.served_30d), str(r.cited_30d),
                  f"{r.thumbs_up}/{r.thumbs_down}", ", ".join(r.flags))
    Console().print(t)


@kb.command("nudge-owners")
def nudge_owners() -> None:
    """Tell owners about their flagged documents in their chat (once per document, flag and week)."""
    with opened() as cp:
        n = cp.publishing.nudge_owners(cp.settings.tenant)
    typer.echo(f"{n} owner messages queued (delivered by `copilot serve`)")


@kb.command("rebuild")
def rebuild() -> None:
    """Rebuild the vector index from the passages stored in the database (an unreadable or lost chroma/ folder)."""
    from bot.app import model_embedder
    from rag.index import VectorIndex

    s = load_settings()
    model = model_embedder(s)
    VectorIndex.rebuild(s.chroma_dir, model.model_id, model.dim, wipe=True, url=s.chroma_url)
    with opened(s) as cp:
        if cp.knowledge.vectors.broken:
            raise CliError(f"{cp.knowledge.vectors.broken}: check the folder's permissions and disk space", 1)
        n = cp.knowledge.ingestor.reembed_live()
    typer.echo(f"rebuilt the vector index at {s.chroma_dir}: {n} passages")


@kb.command("reembed")
def reembed() -> None:
    """Rebuild the vector index with the configured COPILOT_EMBED_MODEL (after changing models)."""
    from bot.app import model_embedder
    from rag.index import VectorIndex

    s = load_settings()
    model = model_embedder(s)
    VectorIndex.rebuild(s.chroma_dir, model.model_id, model.dim, url=s.chroma_url)
    with opened(s) as cp:
        n = cp.knowledge.ingestor.reembed_live()
    typer.echo(f"re-embedded {n} passages with {model.model_id}")


@kb.command("rotate-links")
def rotate_links(revoke: bool = typer.Option(False, "--revoke", help="Delete the older keys: every citation link made so far stops working.")) -> None:
    """Sign new citation links with a new key (data_dir/link-keys/); with --revoke, void the links already sent."""
    from bot.web.links import KeyRing

    s = load_settings()
    ring = KeyRing(s.data_dir / "link-keys")
    kid = ring.rotate(revoke=revoke)
    typer.echo(f"citation links are now signed with key {kid}" + ("; every older link is revoked" if revoke else ""))
