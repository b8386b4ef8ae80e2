"""Find the sender's new text in a reply: drop quoted history, signatures and list footers.

Knows the markers Chinese and English mail clients write (QQ, 163/Coremail, Outlook in Simplified and
Traditional Chinese, Gmail, Thunderbird, Apple Mail) and mailing-list footers. Plain-text only:
HTML is converted before it gets here. Imports only the standard library.
"""

from __future__ import annotations

import re

__all__ = ["strip_quoted"]

# Everything from one of these lines down is history, a signature or a footer.
_SEPARATOR = re.compile(
    r"^\s*[-=_*\s]*-{2,}\s*(?:原始邮件|原始郵件|邮件原件|郵件原件|原邮件|Original Message|Original|"
    r"Forwarded message|转发邮件|轉寄郵件|转发的邮件|轉寄的郵件|Message d'origine|"
    r"Ursprüngliche Nachricht|Weitergeleitete Nachricht)\s*-{2,}[-=_*\s]*$", re.I)
_SIGNATURE = re.compile(r"^(?:-- ?|--\xa0)$")
_CLIENT_LINE = re.compile(
    r"^\s*(?:Sent from my |Sent from Mail for |Get Outlook for |Begin forwarded message:|"
    r"发自我的|從我的.*傳送|从我的.*发送|来自我的|來自我的|发自网易邮箱|发自手机)", re.I)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_LONG_RULE = re.compile(r"^\s*_{30,}\s*$")  # Outlook's reply rule (32), an HTML <hr>, mailman (47)
_FOOTER = re.compile(
    r"^\s*(?:.{0,80}\bmailing list\s*$|Mailing list info:|To unsubscribe|Unsubscribe:|"
    r"You received this message because you are subscribed|https?://\S*/listinfo/|"
    r"退订|取消订阅|退訂|取消訂閱)", re.I)
_HEADER_KEYS = {
    "from": r"From|发件人|發件人|寄件者|寄件人|发信人|發信人",
    "other": r"Sent|Date|To|Cc|Subject|发送时间|发件时间|发送日期|时间|時間|日期|收件人|收件者|"
             r"抄送|副本|主题|主題|主旨|已傳送|寄件日期|傳送時間",
}
_FROM_LINE = re.compile(r"^\s*\*?\s*(?:%s)\s*\*?\s*[:：]" % _HEADER_KEYS["from"], re.I)
_HEADER_LINE = re.compile(r"^\s*\*?\s*(?:%s)\s*\*?\s*[:：]" % _HEADER_KEYS["other"], re.I)
# "On <date>, <who> wrote:", "在 2024年1月1日 ... 写道：", "<who> 于2024年1月1日周一 10:00写道："
_ATTRIBUTION = re.compile(
    r"^\s*(?:(?:On|Le|Am|El|Il|Op)\s.{0,400}(?:wrote|a écrit|schrieb|escribió|ha scritto|schreef)"
    r"|在.{0,400}(?:写道|寫道)|.{0,300}[于於].{0,100}(?:写道|寫道))\s*[:：]\s*$", re.I | re.S)


def _is_quote(line: str) -> bool:
    return line.startswith(">")


def _next_lines(lines: list[str], start: int, count: int) -> list[str]:
    """The next `count` non-blank lines from `start`."""
    return [ln for ln in lines[start:start + count * 3] if ln.strip()][:count]


def _attribution_at(lines: list[str], i: int) -> int:
    """Number of lines (1-3) of an attribution starting at line i, or 0. Clients wrap long ones."""
    if not lines[i].strip() or len(lines[i]) > 500:
        return 0
    for span in (1, 2, 3):
        if i + span <= len(lines) and _ATTRIBUTION.match(" ".join(lines[i:i + span])):
            return span
    return 0


def _history_start(lines: list[str]) -> int:
    """Index of the first line of quoted history, signature or list footer (len(lines) if none)."""
    tail_from = max(0, len(lines) - 12)
    for i, line in enumerate(lines):
        if _is_quote(line):
            continue
        if _SIGNATURE.match(line) or _SEPARATOR.match(line) or _CLIENT_LINE.match(line) \
                or _LONG_RULE.match(line):
            return i
        if _RULE.match(line):
            after = _next_lines(lines, i + 1, 3)
            if any(_FROM_LINE.match(a) or _HEADER_LINE.match(a) or _FOOTER.match(a) for a in after):
                return i
        if _FROM_LINE.match(line) and any(_HEADER_LINE.match(a) for a in _next_lines(lines, i + 1, 4)):
            return i
        span = _attribution_at(lines, i)
        if span:
            following = _next_lines(lines, i + span, 1)
            if not (following and _is_quote(following[0])):
                return i  # history pasted without '>' (Coremail, Gmail HTML): all of it goes
        if i >= tail_from and _FOOTER.match(line):
            return i
    return len(lines)


def _drop_quote_blocks(lines: list[str]) -> list[str]:
    """Remove '>' lines and the attribution that introduces each block; keep interleaved text."""
    out: list[str] = []
    for line in lines:
        if not _is_quote(line):
            out.append(line)
            continue
        if out and not _is_quote(out[-1]):
            end = len(out)
            while end and not out[end - 1].strip():
                end -= 1
            for start in range(end - 1, max(-1, end - 4), -1):
                if _attribution_at(out[start:end], 0) == end - start:
                    del out[start:]
                    break
        out.append(line)
    return [ln for ln in out if not _is_quote(ln)]


def _tidy(lines: list[str]) -> str:
    text = "\n".join(ln.rstrip() for ln in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def strip_quoted(text: str) -> str:
    """Only the sender's new text: quoted history, signature and list footer removed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = lines[:_history_start(lines)]
    return _tidy(_drop_quote_blocks(lines))
