"""Tolerant decoding of the bytes and header words found in real mail.

Owns charset handling (labels as mail clients misuse them), RFC 2047 encoded words and RFC 2231
parameters. Pure functions over str/bytes: imports nothing from the bot, other connectors or the network.

Why not the stdlib decoders alone: mail labelled GB2312 is routinely GBK or GB18030, Big5 is
routinely Big5-HKSCS or CP950, and Outlook's ISO-2022-JP carries Microsoft extension characters
(CP50220) that Python's iso2022_jp codec rejects. Each label is therefore mapped to the superset
codec that mail clients actually write.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

__all__ = ["decode_base64", "decode_bytes", "decode_header", "decode_8bit", "parse_params"]

# Label (lower-case, or Python's canonical codec name) -> codec to decode with.
_SUPERSET = {
    "gb2312": "gb18030", "gbk": "gb18030", "gb18030": "gb18030", "x-gbk": "gb18030",
    "cp936": "gb18030", "ms936": "gb18030", "euc-cn": "gb18030", "x-euc-cn": "gb18030",
    "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs", "big5-hkscs": "big5hkscs",
    "ks_c_5601-1987": "cp949", "euc_kr": "cp949", "euc-kr": "cp949",
    "shift_jis": "cp932", "windows-31j": "cp932",
    "iso8859-1": "cp1252", "iso-8859-1": "cp1252", "latin-1": "cp1252",
    "tis-620": "cp874", "tis_620": "cp874",
}
# Tried strictly, in order, when the mapped codec rejects the bytes.
_FALLBACKS = {"big5hkscs": ("cp950",), "cp950": ("big5hkscs",), "cp1252": ("latin-1",)}
# Labels that say nothing about 8-bit bytes: sniff instead.
_UNDECLARED = {"", "us-ascii", "ascii", "ansi_x3.4-1968", "unknown-8bit", "x-unknown", "unknown",
               "default", "charset", "none", "x-user-defined"}
_ISO2022JP = {"iso-2022-jp", "iso2022_jp", "csiso2022jp", "iso-2022-jp-ms", "cp50220", "cp50221",
              "cp50222", "iso-2022-jp-1", "iso2022_jp_1", "iso-2022-jp-2", "iso2022_jp_2"}
_SNIFF_ORDER = ("utf-8", "gb18030", "cp1252")
# Python codecs that are not mail charsets (unicode-escape would even rewrite "\\x41" as "A").
_NOT_CHARSETS = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"}


def _try(data: bytes, codec: str, errors: str = "strict") -> str | None:
    try:
        return data.decode(codec, errors)
    except Exception:  # UnicodeError, LookupError, or a non-text codec such as 'base64'
        return None


def _codec_for(label: str | None) -> str | None:
    """The codec to decode a declared charset with, or None when it must be sniffed."""
    label = (label or "").strip().strip("\"'").lower().split("*")[0]
    if label in _UNDECLARED:
        return None
    if label in _ISO2022JP:
        return "iso-2022-jp"
    if label in _SUPERSET:
        return _SUPERSET[label]
    try:
        info = codecs.lookup(label)
    except Exception:  # LookupError; ValueError/UnicodeError for NULs or raw bytes in the label
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    name = info.name
    if name.startswith("iso2022_jp"):
        return "iso-2022-jp"
    return _SUPERSET.get(name, name)


def decode_8bit(data: bytes) -> str:
    """Sniff bytes with no (usable) charset label: UTF-8, then GB18030, then Windows-1252."""
    if b"\x1b$" in data:
        return _decode_iso2022jp(data)[0]
    for codec in _SNIFF_ORDER:
        text = _try(data, codec)
        if text is not None:
            return text
    return data.decode("latin-1")


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode with the declared charset, tolerantly. Returns (text, lossy)."""
    codec = _codec_for(charset)
    if codec is None:
        return decode_8bit(data), False
    if codec == "iso-2022-jp":
        return _decode_iso2022jp(data)
    text = _try(data, codec)
    if text is not None:
        return text, False
    for other in _FALLBACKS.get(codec, ()):
        text = _try(data, other)
        if text is not None:
            return text, False
    replaced = _try(data, codec, "replace")
    if replaced is None:
        return decode_8bit(data), True
    if codec == "utf-8":
        # Mail labelled UTF-8 that is really GBK decodes to mostly U+FFFD; a few stray ones are
        # damage in transit and the label is right.
        non_ascii, bad = sum(1 for ch in replaced if ord(ch) > 127), replaced.count("\ufffd")
        gb = _try(data, "gb18030")
        if gb is not None and bad >= 2 and bad * 3 >= non_ascii:
            return gb, False
    return replaced, True


# --- ISO-2022-JP as Outlook writes it (CP50220): JIS X 0208 plus NEC/IBM extension rows --------

_ESC_MODES = {b"(B": "ascii", b"(J": "ascii", b"$@": "jis", b"$B": "jis", b"(I": "kana"}
_JIS_REVISION = b"\x1b&@"  # announces JIS X 0208-1990 before ESC $ B: nothing to do


def _decode_iso2022jp(data: bytes) -> tuple[str, bool]:
    """Decode by converting JIS to Shift_JIS and reading that as CP932, which knows the Microsoft
    extension characters (e.g. JIS 0x7A34 -> SJIS 0xEDB2 -> U+6600)."""
    if b"\x1b" not in data and any(b > 0x7F for b in data):
        return decode_8bit(data), False  # mislabelled 8-bit text
    out = bytearray()
    mode, i, n, lossy = "ascii", 0, len(data), False
    while i < n:
        b = data[i]
        if b == 0x1B:
            seq = data[i + 1:i + 3]
            if seq in _ESC_MODES:
                mode, i = _ESC_MODES[seq], i + 3
            elif data.startswith(_JIS_REVISION, i):
                i += 3
            else:  # JIS X 0212, GB2312, KS C 5601...: designations only ISO-2022-JP-2 knows
                text = _try(data, "iso2022_jp_2")
                return (text, False) if text is not None else (data.decode("iso2022_jp_2", "replace"), True)
            continue
        if b in (0x0E, 0x0F):  # SO/SI: half-width katakana shift (CP50221)
            mode, i = ("kana" if b == 0x0E else "ascii"), i + 1
            continue
        if b in (0x0A, 0x0D):  # a line never continues a double-byte run
            mode = "ascii"
        if mode == "jis" and 0x21 <= b <= 0x7E and i + 1 < n and 0x21 <= data[i + 1] <= 0x7E:
            j2 = data[i + 1]
            s1 = ((b + 1) >> 1) + (0x70 if b <= 0x5E else 0xB0)
            s2 = j2 + (0x1F + (j2 >= 0x60) if b & 1 else 0x7E)
            out += bytes((s1, s2))
            i += 2
            continue
        if mode == "kana" and 0x21 <= b <= 0x5F:
            out.append(b + 0x80)
        else:
            lossy |= mode == "jis" and b > 0x20
            out.append(b)
        i += 1
    text = out.decode("cp932", "replace")
    return text, lossy or "\ufffd" in text


# --- RFC 2047 encoded words ---------------------------------------------------------------------

_EW = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_EW_TRUNCATED = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\Z")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r\n?(?![ \t])|\n")
RAW_8BIT = re.compile("[\udc80-\udcff]")  # bytes >= 0x80 the stdlib parser kept as surrogates
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_base64(payload: str, padded: bool = False) -> tuple[bytes, bool]:
    """Base64 that tolerates junk characters and bad padding. Returns (data, repaired).

    With padded=True (MIME bodies, whose encoders always pad) a length that is not a multiple
    of 4 means the data was cut short, and counts as repaired; encoded words often omit padding."""
    stripped = re.sub(r"\s+", "", payload)
    clean = re.sub(r"[^A-Za-z0-9+/]", "", stripped.rstrip("="))
    repaired = clean != stripped.rstrip("=") or (padded and len(stripped) % 4 != 0)
    if len(clean) % 4 == 1:  # a dangling character cannot encode anything: truncated
        clean, repaired = clean[:-1], True
    try:
        return base64.b64decode(clean + "=" * (-len(clean) % 4)), repaired
    except (binascii.Error, ValueError):
        return b"", True


def _q(payload: str) -> bytes:
    raw = payload.replace("_", " ").encode("utf-8", "surrogateescape")
    return _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def decode_header(value: str) -> tuple[str, bool]:
    """Unfold a raw header value and decode raw 8-bit bytes and encoded words anywhere in it
    (inside quoted strings too). Adjacent words in one charset are joined as bytes first, since
    clients split multi-byte characters across words. Returns (text, lossy)."""
    value = _FOLD.sub("", value)
    if RAW_8BIT.search(value):  # raw 8-bit bytes kept by the parser
        value = decode_8bit(value.encode("ascii", "surrogateescape"))
    pieces: list[str] = []
    run_charset, run_data, lossy = None, b"", False

    def flush() -> None:
        nonlocal run_charset, run_data, lossy
        if run_charset is not None:
            text, bad = decode_bytes(run_data, run_charset)
            pieces.append(text)
            lossy |= bad
        run_charset, run_data = None, b""

    matches = list(_EW.finditer(value))
    tail = _EW_TRUNCATED.search(value, matches[-1].end() if matches else 0)
    pos = 0
    for m in matches + ([tail] if tail else []):
        between = value[pos:m.start()]
        if between.strip() or run_charset is None:
            flush()
            pieces.append(between)
        charset = m.group(1).split("*")[0].lower()
        if m.group(2) in "bB":
            data, repaired = decode_base64(m.group(3))
        else:
            data, repaired = _q(m.group(3)), False
        lossy |= repaired or m is tail
        if charset != run_charset:
            flush()
            run_charset = charset
        run_data += data
        pos = m.end()
    flush()
    pieces.append(value[pos:])
    return "".join(pieces), lossy


# --- MIME parameters (RFC 2045 + RFC 2231) -------------------------------------------------------

_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.S)
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def parse_params(raw: str) -> tuple[str, dict[str, str], bool]:
    """Split a raw Content-Type / Content-Disposition value into (main value, params, lossy).

    Handles RFC 2231 (charset'lang'%XX, split continuations name*0*, name*1), encoded words in
    quoted values (not allowed, but Coremail/Outlook write them) and raw 8-bit bytes."""
    raw = _FOLD.sub("", raw)
    main, _, rest = raw.partition(";")
    plain: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for m in _PARAM.finditer(";" + rest):
        name, val = m.group(1).lower(), m.group(2).strip()
        if val.startswith('"'):
            # Only \" and \\ are unescaped: Outlook leaves Windows paths' backslashes bare.
            val = re.sub(r'\\([\\"])', r"\1", val[1:-1] if val.endswith('"') and len(val) > 1 else val[1:])
        if "*" in name:
            base, _, num = name.partition("*")
            extended = num.endswith("*") or num == ""
            num = num.rstrip("*")
            index = int(num) if num.isascii() and num.isdigit() else 0
            sections.setdefault(base, []).append((index, extended, val))
        else:
            plain.setdefault(name, val)
    params, lossy = {}, False
    for name, val in plain.items():
        params[name], bad = decode_header(val)
        lossy |= bad
    for name, parts in sections.items():
        charset, data = None, b""
        for idx, (_, extended, val) in enumerate(sorted(parts, key=lambda p: p[0])):
            if extended:
                if idx == 0 and val.count("'") >= 2:
                    charset, _, val = val.split("'", 2)
                data += _PCT.sub(lambda m: bytes([int(m.group(1), 16)]),
                                 val.encode("utf-8", "surrogateescape"))
            else:
                data += val.encode("utf-8", "surrogateescape")
        text, bad = decode_bytes(data, charset)
        params[name], lossy = text, lossy or bad  # RFC 2231 form wins over the plain one
    return main.strip().lower(), params, lossy


def unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (Thunderbird, Apple Mail)."""
    out: list[str] = []
    for line in text.split("\n"):
        if out and out[-1].endswith(" ") and out[-1] != "-- " and \
                len(line) - len(line.lstrip(">")) == len(out[-1]) - len(out[-1].lstrip(">")):
            prev = out.pop()
            out.append((prev[:-1] if delsp else prev) + line.lstrip(">").removeprefix(" "))
        else:
            out.append(line)
    return "\n".join(out)
