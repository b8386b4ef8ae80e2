"""copilot email parse: what the copilot sees in a message file (no mailbox, no database)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from bot.cli.common import app, emit

email_app = typer.Typer(help="The email channel: inspect messages as the copilot reads them.", no_args_is_help=True)
app.add_typer(email_app, name="email")


def seen(path: Path, authserv_id: str = "") -> dict:
    """One file as the email connector reads it; raises ValueError with a one-line reason."""
    from connectors.email import UnparseableEmail, parse_email
    from connectors.email.authres import check_sender
    from connectors.email.parse import addresses, platform_id, thread_root

    if not path.exists():
        raise ValueError("no such file")
    if path.is_dir():
        raise ValueError("is a folder, not a message file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    try:
        p = parse_email(raw)
    except UnparseableEmail as exc:
        raise ValueError(f"not an email: {exc}") from None
    except Exception as exc:
        raise ValueError(f"cannot be parsed: {type(exc).__name__}: {exc}") from None
    pid = platform_id(p, raw)
    sender = check_sender(p.auth_results, p.from_addr, (authserv_id,))
    return {
        "file": str(path),
        "from": {"name": p.from_name, "address": p.from_addr},
        "sender_verified": sender.verified,
        "sender_check": sender.reason,
        "to": [{"name": n, "address": a} for n, a in p.to],
        "cc": [{"name": n, "address": a} for n, a in p.cc],
        "reply_to": addresses(p.reply_to),
        "subject": p.subject,
        "date": p.date.isoformat() if p.date else None,
        "message_id": p.message_id,
        "in_reply_to": p.in_reply_to,
        "references": p.references,
        "thread_id": thread_root(p, pid),
        "platform_msg_id": pid,
        "no_reply": p.auto_reason or "",
        "text": p.new_text,
        "body": p.body_text,
        "attachments": [{"name": a.filename, "type": a.content_type, "size": len(a.data), "inline": a.inline}
                        for a in p.attachments],
        "defects": p.defects,
    }


def _human(d: dict) -> str:
    def people(items: list[dict]) -> str:
        return ", ".join(f"{i['name']} <{i['address']}>" if i["name"] else i["address"] for i in items)

    rows = [
        ("file", d["file"]), ("from", people([d["from"]])),
        ("sender", ("verified: " if d["sender_verified"] else "not verified: ") + d["sender_check"]), ("to", people(d["to"])), ("cc", people(d["cc"])),
        ("reply-to", ", ".join(d["reply_to"])), ("subject", d["subject"]), ("date", d["date"] or ""),
        ("message-id", d["message_id"] or ""), ("in-reply-to", d["in_reply_to"] or ""),
        ("references", " ".join(d["references"])), ("thread", d["thread_id"]),
        ("no reply", d["no_reply"] or "no (the copilot may answer)"),
    ]
    out = [f"{k + ':':<13}{v}" for k, v in rows if v]
    for a in d["attachments"]:
        out.append(f"{'attachment:':<13}{a['name']} ({a['type']}, {a['size']} bytes{', inline' if a['inline'] else ''})")
    for defect in d["defects"]:
        out.append(f"{'repaired:':<13}{defect}")
    out += ["", "--- new text (quoted history and signature stripped) ---", d["text"].rstrip()]
    return "\n".join(out)


@email_app.command("parse")
def parse(
    files: List[Path] = typer.Argument(..., help="Message files (.eml, RFC 5322 bytes)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per file (always, for several files)."),
    authserv_id: str = typer.Option("", "--authserv-id", envvar="COPILOT_EMAIL_AUTHSERV_ID",
                                    help="The receiving server's authserv-id: only its Authentication-Results verify a sender."),
) -> None:
    """Show what the copilot sees in each message: sender (and whether the receiving server verified it),
    recipients, subject, date, ids, thread, text, attachments. Exit 0 when every file parsed; 2 (one line per bad file on stderr) otherwise."""
    bad = 0
    lines = as_json or len(files) > 1
    for i, path in enumerate(files):
        try:
            d = seen(path, authserv_id)
        except ValueError as exc:
            bad += 1
            print(f"copilot: error: {path}: {exc}", file=sys.stderr)
            if lines:
                emit({"file": str(path), "error": str(exc)})
            continue
        if lines:
            emit(d)
        else:
            typer.echo(("\n" if i else "") + _human(d))
    if bad:
        raise typer.Exit(2)
