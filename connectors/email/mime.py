"""Raw RFC 5322 bytes -> ParsedEmail (parse.py makes the InboundMessage of it): addresses, threading ids, the body as text, the sender's new
text, attachments and the loop-safety verdict (RFC 3834).

The stdlib parser builds the MIME tree. It runs with policy.compat32, which hands back raw header
strings and never decodes on access: policy.default's header objects decode with the plain codecs
(wrong for GB2312 that is really GBK, and for Outlook's ISO-2022-JP) and can raise on malformed input.
Every header, parameter and body is decoded instead by `decode`, which maps the charset labels mail
clients misuse to the codecs they really mean. Never imports the bot, other connectors, or network code.
"""

from __future__ import annotations

import email
import mimetypes
import quopri
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from .decode import RAW_8BIT, decode_8bit, decode_base64, decode_bytes, decode_header, parse_params, unflow
from .htmltext import html_to_text
from .loopsafe import auto_reason
from .quote import strip_quoted

__all__ = ["EmailAttachment", "ParsedEmail", "UnparseableEmail", "parse_email", "strip_quoted"]

Address = tuple[str, str]


@dataclass(frozen=True)
class EmailAttachment:
    filename: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None  # without the angle brackets, as HTML's "cid:" refers to it


@dataclass(frozen=True)
class ParsedEmail:
    from_name: str
    from_addr: str
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    subject: str
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    body_text: str
    new_text: str
    attachments: list[EmailAttachment]
    headers: dict[str, str]
    auto_reason: str | None
    defects: list[str]
    # Every Authentication-Results value, topmost first (authres.py decides which one to trust).
    auth_results: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "from_name": self.from_name, "from_addr": self.from_addr,
            "to": [list(a) for a in self.to], "cc": [list(a) for a in self.cc],
            "reply_to": [list(a) for a in self.reply_to],
            "subject": self.subject, "date": self.date.isoformat() if self.date else None,
            "message_id": self.message_id, "in_reply_to": self.in_reply_to,
            "references": list(self.references),
            "body_text": self.body_text, "new_text": self.new_text,
            "attachments": [
                {"name": a.filename, "type": a.content_type, "size": len(a.data),
                 "inline": a.inline, "content_id": a.content_id}
                for a in self.attachments
            ],
            "headers": dict(self.headers), "auto_reason": self.auto_reason,
            "defects": list(self.defects), "auth_results": list(self.auth_results),
        }


class UnparseableEmail(ValueError):
    """The input is clearly not an email (empty, or no header block at the start)."""


# --- loading ----------------------------------------------------------------------------------

_FIELD = re.compile(rb"[!-9;-~]{1,200}:")
_MAIL_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "received", "mime-version",
                 "content-type", "return-path", "delivered-to", "sender", "reply-to", "in-reply-to"}
_MAX_DEPTH = 40  # MIME nesting we follow; deeper parts are treated as opaque attachments


def _load(raw: bytes) -> Message:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_email wants bytes, not {type(raw).__name__}")
    data = bytes(raw).removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n")
    if data.startswith(b"From "):  # mbox separator line
        data = data.partition(b"\n")[2]
    if not data.strip():
        raise UnparseableEmail("empty input")
    if not _FIELD.match(data):
        raise UnparseableEmail("input does not start with a mail header")
    try:
        msg = email.message_from_bytes(data, policy=compat32)
    except RecursionError as exc:
        raise UnparseableEmail("MIME nesting too deep to parse") from exc
    if not any(k.lower() in _MAIL_HEADERS for k in msg.keys()):
        raise UnparseableEmail("none of the usual mail headers is present")
    return msg


def _raw(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


# --- header values ------------------------------------------------------------------------------

_ANGLE_ID = re.compile(r"<[^<>\s]+>")


def _addresses(raw: str | None) -> list[Address]:
    if not raw:
        return []
    unfolded = re.sub(r"\r?\n", "", raw)
    if RAW_8BIT.search(unfolded):  # raw 8-bit bytes in the header
        unfolded = decode_8bit(unfolded.encode("utf-8", "surrogateescape"))
    out = []
    for name, addr in getaddresses([unfolded]):
        name = decode_header(name)[0].strip().strip('"').strip()
        if name or addr:
            out.append((name, addr.strip()))
    if not out:
        out = [("", m) for m in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", unfolded)]
    return out


def _one_id(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    m = _ANGLE_ID.search(value)
    return m.group(0) if m else value.split()[0]


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# --- the MIME tree --------------------------------------------------------------------------------

def _walk(msg: Message):
    """Every part, depth first; iterative, unlike Message.walk()."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        stack.extend(reversed(_children(part)))


def _children(part: Message) -> list[Message]:
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    return [c for c in payload if isinstance(c, Message)] if isinstance(payload, list) else []


def _is_container(part: Message) -> bool:
    return part.is_multipart() and part.get_content_maintype() == "multipart"


class _Reader:
    """One message's decoding: picks the body parts, renders them, collects attachments and
    the defects noticed along the way."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.defects: list[str] = []
        self._texts: dict[int, str] = {}

    def defect(self, text: str) -> None:
        if text not in self.defects:
            self.defects.append(text)

    def params(self, part: Message, header: str) -> tuple[str, dict[str, str]]:
        raw = _raw(part, header)
        if raw is None:
            return "", {}
        main, params, lossy = parse_params(raw)
        if lossy:
            self.defect(f"undecodable {header} parameter repaired")
        return main, params

    def filename(self, part: Message) -> str | None:
        name = self.params(part, "content-disposition")[1].get("filename") \
            or self.params(part, "content-type")[1].get("name")
        if name:
            name = re.split(r"[/\\]", name)[-1]
            name = "".join(ch for ch in name if ch.isprintable()).strip()
        return name if name and name not in (".", "..") else None

    def payload(self, part: Message) -> bytes:
        """The part's decoded bytes. Base64 is repaired here (the stdlib hands back the encoded
        text when the length is impossible); the rest is the stdlib's decode=True."""
        if part.is_multipart():
            return b""
        stated = str(part.get("content-transfer-encoding", "")).lower()
        cte = (re.split(r"[\s;]+", stated.strip()) or [""])[0]
        if cte == "base64":
            try:
                encoded = str(part.get_payload())
            except Exception:  # 8-bit junk + a charset label Python chokes on (e.g. holding NUL)
                self.defect(f"damaged base64 repaired in a {part.get_content_type()} part")
                return part.get_payload(decode=True) or b""
            data, repaired = decode_base64(encoded, padded=True)
            if repaired:
                self.defect(f"damaged base64 repaired in a {part.get_content_type()} part")
            return data
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return b""
        if cte == "quoted-printable" and stated != cte:  # "quoted-printable " etc.: stdlib skipped it
            data = quopri.decodestring(data)
        return data

    # body selection
    def is_body_text(self, part: Message) -> bool:
        return part.get_content_type() in ("text/plain", "text/html") \
            and self.params(part, "content-disposition")[0] != "attachment" \
            and not self.filename(part)

    def pick(self, part: Message, depth: int = 0) -> list[Message]:
        """The leaf parts a mail client would show as the message text, in order."""
        if not _is_container(part):
            return [part] if not part.is_multipart() and self.is_body_text(part) else []
        children = _children(part)
        subtype = part.get_content_subtype()
        if depth >= _MAX_DEPTH or subtype == "encrypted" or not children:
            return []
        if subtype == "alternative":
            return self.pick_alternative(children, depth)
        if subtype == "related":
            start = self.params(part, "content-type")[1].get("start", "").strip()
            root = next((c for c in children if start and (_raw(c, "content-id") or "").strip() == start),
                        children[0])
            return self.pick(root, depth + 1)
        if subtype == "signed":
            children = children[:1]
        return [leaf for child in children for leaf in self.pick(child, depth + 1)]

    def pick_alternative(self, children: list[Message], depth: int) -> list[Message]:
        options = [o for o in (self.pick(c, depth + 1) for c in children) if o]
        if not options:
            return []
        plain = next((o for o in options if all(p.get_content_type() == "text/plain" for p in o)), None)
        rich = next((o for o in reversed(options) if o is not plain), None)
        if plain is None or rich is None:
            return plain or rich or []
        plain_text = self.join(plain)
        plain_len = len(plain_text.strip())
        # Rendered HTML is never longer than its decoded bytes: when the plain part is real text and
        # at least a fifth of that, it wins without rendering the HTML (the costly half of parsing).
        if plain_len and plain_len * 5 >= sum(len(self.payload(p)) for p in rich) and strip_quoted(plain_text).strip():
            return plain
        rich_text = self.join(rich)
        # Plain parts that are empty, only a list footer, or a "view this in HTML" stub lose.
        stub = (not strip_quoted(plain_text).strip() and strip_quoted(rich_text).strip()) \
            or (len(rich_text) >= 100 and len(plain_text.strip()) * 5 < len(rich_text))
        return rich if stub else plain

    # rendering
    def text(self, part: Message) -> str:
        key = id(part)
        if key not in self._texts:
            self._texts[key] = self._render(part)
        return self._texts[key]

    def join(self, parts: list[Message]) -> str:
        return "\n\n".join(t for t in (self.text(p).strip("\n") for p in parts) if t.strip())

    def _render(self, part: Message) -> str:
        data = self.payload(part)
        _, ctype_params = self.params(part, "content-type")
        charset = ctype_params.get("charset")
        html = part.get_content_type() == "text/html"
        if html and not charset:
            meta = re.search(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?([\w.:-]+)", data[:4096], re.I)
            charset = meta.group(1).decode("ascii") if meta else None
        text, lossy = decode_bytes(data, charset)
        if lossy:
            self.defect(f"undecodable bytes replaced in a {part.get_content_type()} part ({charset})")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if html:
            try:
                return html_to_text(text)
            except Exception:  # bs4 on hostile markup: fall back to dropping tags
                self.defect("HTML body could not be parsed; tags stripped")
                return re.sub(r"<[^>]*>", " ", text)
        if ctype_params.get("format", "").lower() == "flowed":
            text = unflow(text, ctype_params.get("delsp", "").lower() == "yes")
        return text

    # attachments
    def attachments(self, body: list[Message]) -> list[EmailAttachment]:
        shown = {id(p) for p in body}
        out: list[EmailAttachment] = []
        stack: list[tuple[Message, int, bool]] = [(self.msg, 0, False)]
        while stack:
            part, depth, related = stack.pop()
            if _is_container(part) and depth < _MAX_DEPTH:
                related = part.get_content_subtype() == "related"
                stack.extend((c, depth + 1, related) for c in reversed(_children(part)))
                continue
            if id(part) in shown or (not part.is_multipart() and self.is_body_text(part)):
                continue  # displayed, or the unchosen alternative of something displayed
            out.append(self.attachment(part, len(out) + 1, related))
        return out

    def attachment(self, part: Message, number: int, related: bool) -> EmailAttachment:
        ctype = part.get_content_type()
        if part.is_multipart():  # message/rfc822 and friends, or nesting too deep: keep the bytes
            try:
                inner = _children(part)
                data = b"\n".join(c.as_bytes() for c in inner) if ctype.startswith("message/") \
                    else part.as_bytes()
            except Exception:
                data = b""
                self.defect(f"could not serialise an attached {ctype}")
        else:
            data = self.payload(part)
        disposition = self.params(part, "content-disposition")[0]
        content_id = (_raw(part, "content-id") or "").strip().strip("<>").strip() or None
        name = self.filename(part) or f"attachment-{number}{mimetypes.guess_extension(ctype) or '.bin'}"
        # Inline: shown inside the body, e.g. an image an HTML part refers to by cid.
        inline = disposition == "inline" or (content_id is not None and (related or not disposition))
        return EmailAttachment(name, ctype, data, inline, content_id)


# --- entry point ----------------------------------------------------------------------------------

def parse_email(raw: bytes) -> ParsedEmail:
    """Parse one message. Damage is repaired and listed in `defects`; only input that is clearly
    not an email raises UnparseableEmail."""
    msg = _load(raw)
    reader = _Reader(msg)
    headers: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key not in headers:
            text, lossy = decode_header(str(value))
            headers[key] = text.strip()
            if lossy:
                reader.defect(f"undecodable header repaired: {name}")
    # Addresses come from the raw headers: split first, then decode names (a name may hold commas).
    senders = _addresses(_raw(msg, "from")) or _addresses(_raw(msg, "sender"))
    from_name, from_addr = senders[0] if senders else ("", "")
    subject = headers.get("subject", "")
    date = _date(headers.get("date"))
    if headers.get("date") and date is None:
        reader.defect("unparseable Date header")
    for part in _walk(msg):
        for d in part.defects:
            reader.defect(f"MIME: {type(d).__name__}")
    body = reader.pick(msg)
    body_text = reader.join(body)
    references = _ANGLE_ID.findall(headers.get("references", "")) or headers.get("references", "").split()
    return ParsedEmail(
        from_name=from_name, from_addr=from_addr,
        to=_addresses(_raw(msg, "to")), cc=_addresses(_raw(msg, "cc")),
        reply_to=_addresses(_raw(msg, "reply-to")),
        subject=subject, date=date,
        message_id=_one_id(headers.get("message-id")),
        in_reply_to=_one_id(headers.get("in-reply-to")),
        references=references,
        body_text=body_text, new_text=strip_quoted(body_text),
        attachments=reader.attachments(body),
        headers=headers,
        auto_reason=auto_reason(headers, from_addr, subject, msg.get_content_type()),
        defects=reader.defects,
        auth_results=tuple(decode_header(str(v))[0].strip() for k, v in msg.raw_items() if k.lower() == "authentication-results"),
    )
