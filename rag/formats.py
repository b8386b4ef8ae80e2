"""Document formats -> a list of structural blocks (headings, text, lists, tables) plus metadata.

One parser per format, each built on the format's maintained library. A file that is corrupt,
encrypted or yields no text raises `IngestError` with a reason a person can act on.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Callable

import frontmatter
from markdown_it import MarkdownIt

from rag.limits import MAX_BLOCKS, MAX_CELLS, MAX_PAGE_IMAGES, FrontMatter, IngestError, capped_rows, check_zip

__all__ = ["IngestError", "ParsedDoc", "Block", "SUFFIXES", "parse_document"]


@dataclass
class Block:
    kind: str  # heading | text | list | table
    text: str = ""
    level: int = 0
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class ParsedDoc:
    meta: dict[str, Any]
    blocks: list[Block]


SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx", ".csv", ".xlsx", ".pptx", ".png", ".jpg", ".jpeg")


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in meta.items():
        if isinstance(v, (date, datetime)):
            v = v.isoformat()[:10]
        out[str(k).lower()] = v
    return out


def _decode(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030", "big5"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise IngestError("the file is not text in UTF-8, GB18030 or Big5", "encoding")


# Markdown ---------------------------------------------------------------------------------------
_MD = MarkdownIt("commonmark").enable("table")


def _inline_text(tok) -> str:
    if not tok.children:
        return tok.content
    parts = []
    for c in tok.children:
        if c.type in ("text", "code_inline"):
            parts.append(c.content)
        elif c.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)


def parse_markdown_text(text: str) -> list[Block]:
    blocks: list[Block] = []
    tokens = _MD.parse(text)
    i = 0
    list_depth = 0
    items: list[str] = []
    table: Block | None = None
    row: list[str] | None = None
    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open":
            blocks.append(Block("heading", _inline_text(tokens[i + 1]).strip(), level=int(t.tag[1])))
            i += 3
            continue
        if t.type in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
            if list_depth == 0 and items:
                blocks.append(Block("list", "\n".join(items)))
                items = []
        elif t.type == "table_open":
            table = Block("table")
        elif t.type == "table_close" and table is not None:
            blocks.append(table)
            table = None
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close" and table is not None and row is not None:
            if not table.header:
                table.header = row
            else:
                table.rows.append(row)
            row = None
        elif t.type == "inline" and row is not None:
            row.append(_inline_text(t).strip())
        elif t.type == "inline":
            content = _inline_text(t).strip()
            if list_depth:
                items.append("  " * (list_depth - 1) + "- " + content)
            elif content:
                blocks.append(Block("text", content))
        elif t.type in ("fence", "code_block") and t.content.strip():
            blocks.append(Block("text", t.content.strip()))
        i += 1
    return blocks


def parse_markdown(data: bytes, name: str) -> ParsedDoc:
    text = _decode(data)
    try:
        post = frontmatter.loads(text, handler=FrontMatter())
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"the front matter is not valid YAML: {(str(exc).splitlines() or [type(exc).__name__])[0]}", "front_matter") from exc
    return ParsedDoc(_clean_meta(post.metadata), parse_markdown_text(post.content))


def parse_text(data: bytes, name: str) -> ParsedDoc:
    text = _decode(data)
    blocks = [Block("text", p.strip()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return ParsedDoc({}, blocks)


# HTML -------------------------------------------------------------------------------------------
def parse_html(data: bytes, name: str) -> ParsedDoc:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for bad in soup(["script", "style", "noscript", "template", "nav", "footer"]):
        bad.decompose()
    meta: dict[str, Any] = {}
    if soup.title and soup.title.string:
        meta["title"] = soup.title.string.strip()
    for m in soup.find_all("meta"):
        key, val = m.get("name"), m.get("content")
        if key and val and key.lower() in ("id", "audience", "version", "updated", "expires", "owner", "tags", "team"):
            meta[key.lower()] = val
    blocks: list[Block] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "table", "pre", "blockquote"]):
        if el.find_parent(["table", "ul", "ol", "pre"]) is not None and el.name not in ("ul", "ol"):
            continue
        if el.name in ("ul", "ol"):
            if el.find_parent(["ul", "ol"]) is not None:
                continue
            items = [li.get_text(" ", strip=True) for li in el.find_all("li")]
            blocks.append(Block("list", "\n".join("- " + x for x in items if x)))
        elif el.name == "table":
            rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in el.find_all("tr")]
            rows = [r for r in rows if any(r)]
            if rows:
                blocks.append(Block("table", header=rows[0], rows=rows[1:]))
        elif el.name[0] == "h":
            blocks.append(Block("heading", el.get_text(" ", strip=True), level=int(el.name[1])))
        else:
            text = el.get_text(" ", strip=True)
            if text:
                blocks.append(Block("text", text))
    if not blocks:
        text = body.get_text("\n", strip=True)
        blocks = [Block("text", p) for p in text.split("\n") if p.strip()]
    return ParsedDoc(meta, blocks)


# PDF --------------------------------------------------------------------------------------------
def parse_pdf(data: bytes, name: str) -> ParsedDoc:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise IngestError("the PDF is encrypted with a password; upload an unprotected copy", "encrypted")
            except IngestError:
                raise
            except Exception as exc:
                raise IngestError("the PDF is encrypted; upload an unprotected copy", "encrypted") from exc
        pages = [(p.extract_text() or "", p) for p in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"the PDF is damaged and cannot be read ({type(exc).__name__})", "damaged") from exc
    meta: dict[str, Any] = {}
    info = reader.metadata
    if info and info.title:
        meta["title"] = str(info.title)
    blocks = []
    for n, (page, pdf_page) in enumerate(pages, 1):
        if not page.strip():  # no text layer (a scan): read the page's pictures
            page = "\n".join(_ocr_page(pdf_page))
        if not page.strip():
            continue
        if len(pages) > 1:  # the page number stays with its passages, for citations
            blocks.append(Block("heading", f"p. {n}", level=1))
        # pypdf breaks lines inside sentences: re-join lines that don't end a sentence
        text = re.sub(r"(?<![。！？.!?:：])\n(?!\s*[-•·\d])", "", page)
        blocks += [Block("text", p.strip()) for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    if not blocks:
        raise IngestError("the PDF has no extractable text, and OCR found none in its pages", "no_text")
    if len(pages) > 1:
        meta.setdefault("title", PurePath(name).stem)  # not the first page's number
    return ParsedDoc(meta, blocks)


def _ocr_page(page) -> list[str]:
    """The text of a PDF page's pictures (a scanned page is one picture), read by OCR."""
    from rag.ocr import image_lines

    lines: list[str] = []
    try:
        images = list(page.images)
    except Exception:  # a picture pypdf cannot decode is no text, not a damaged file
        return lines
    for img in images[:MAX_PAGE_IMAGES]:
        try:
            lines += image_lines(img.data)
        except IngestError:
            continue
    return lines


# Images -----------------------------------------------------------------------------------------
def parse_image(data: bytes, name: str) -> ParsedDoc:
    """A photo or screenshot (a price sheet, a WeChat chat): its lines of text, by OCR."""
    from rag.ocr import image_lines

    lines = image_lines(data)
    if not lines:
        raise IngestError("the picture shows no text that OCR could read", "no_text")
    return ParsedDoc({}, [Block("text", ln) for ln in lines])


# DOCX -------------------------------------------------------------------------------------------
def parse_docx(data: bytes, name: str) -> ParsedDoc:
    import zipfile

    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data, "DOCX")
    try:
        d = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"the DOCX is damaged and cannot be opened ({type(exc).__name__})", "damaged") from exc
    meta: dict[str, Any] = {}
    if d.core_properties.title:
        meta["title"] = d.core_properties.title
    blocks: list[Block] = []
    for item in d.iter_inner_content():
        if isinstance(item, Paragraph):
            text = item.text.strip()
            if not text:
                continue
            style = (item.style.name or "").lower() if item.style is not None else ""
            m = re.match(r"heading (\d)", style)
            if m or style == "title":
                blocks.append(Block("heading", text, level=int(m.group(1)) if m else 1))
            elif "list" in style:
                blocks.append(Block("list", "- " + text))
            else:
                blocks.append(Block("text", text))
        elif isinstance(item, Table):
            rows = [[c.text.strip() for c in r.cells] for r in item.rows]
            rows = [r for r in rows if any(r)]
            if rows:
                blocks.append(Block("table", header=rows[0], rows=rows[1:]))
    return ParsedDoc(meta, blocks)


# CSV / XLSX -------------------------------------------------------------------------------------
def _table_blocks(title: str, rows: list[list[str]]) -> list[Block]:
    rows = [[str(c).strip() if c is not None else "" for c in r] for r in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    out = [Block("heading", title, level=2)] if title else []
    return out + [Block("table", header=rows[0], rows=rows[1:])]


def parse_csv(data: bytes, name: str) -> ParsedDoc:
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(capped_rows(csv.reader(io.StringIO(text), dialect), [MAX_CELLS], "CSV"))
    except csv.Error as exc:
        raise IngestError(f"the CSV cannot be read: {exc}", "damaged") from exc
    return ParsedDoc({}, _table_blocks("", rows))


def parse_xlsx(data: bytes, name: str) -> ParsedDoc:
    import zipfile

    import openpyxl

    check_zip(data, "XLSX")
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise IngestError(f"the XLSX is damaged and cannot be opened ({type(exc).__name__})", "damaged") from exc
    blocks: list[Block] = []
    budget = [MAX_CELLS]
    try:
        for ws in wb.worksheets:
            if hasattr(ws, "reset_dimensions"):
                ws.reset_dimensions()  # the claimed dimension (A1:XFD1048576) would pad every row
            rows = list(capped_rows(ws.iter_rows(values_only=True), budget, "XLSX"))
            blocks += _table_blocks(ws.title if len(wb.worksheets) > 1 else "", rows)
    finally:
        wb.close()
    return ParsedDoc({}, blocks)


# PPTX -------------------------------------------------------------------------------------------
def parse_pptx(data: bytes, name: str) -> ParsedDoc:
    import zipfile

    from pptx import Presentation

    check_zip(data, "PPTX")
    try:
        prs = Presentation(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"the PPTX is damaged and cannot be opened ({type(exc).__name__})", "damaged") from exc
    blocks: list[Block] = []
    for n, slide in enumerate(prs.slides, 1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        blocks.append(Block("heading", title or f"Slide {n}", level=2))
        for shape in slide.shapes:
            if shape is title_shape:
                continue
            if shape.has_text_frame:
                lines = [p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip()]
                if lines:
                    blocks.append(Block("text", "\n".join(lines)))
            elif getattr(shape, "has_table", False) and shape.has_table:
                rows = [[c.text.strip() for c in r.cells] for r in shape.table.rows]
                blocks += _table_blocks("", rows)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame.text.strip():
            blocks.append(Block("text", slide.notes_slide.notes_text_frame.text.strip()))
    return ParsedDoc({}, blocks)


PARSERS: dict[str, Callable[[bytes, str], ParsedDoc]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".csv": parse_csv,
    ".xlsx": parse_xlsx,
    ".pptx": parse_pptx,
    ".png": parse_image,
    ".jpg": parse_image,
    ".jpeg": parse_image,
}


def parse_document(data: bytes, name: str) -> ParsedDoc:
    """Parse in this process: for untrusted files use `rag.sandbox.Sandbox.parse`, which runs this in a
    child with CPU, memory and wall-clock limits. Anything a parser raises becomes an IngestError."""
    suffix = PurePath(name).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None:
        raise IngestError(f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUFFIXES)}", "unsupported")
    if not data.strip():
        raise IngestError("the file is empty", "empty")
    kind = suffix[1:].upper()
    try:
        doc = parser(data, name)
    except IngestError:
        raise
    except MemoryError as exc:
        raise IngestError(f"the {kind} needs more memory than a file may use", "too_large") from exc
    except RecursionError as exc:
        raise IngestError(f"the {kind} is nested too deeply to read", "damaged") from exc
    except Exception as exc:  # a parser library's own error on a malformed file (XMLSyntaxError, ...)
        raise IngestError(f"the {kind} is damaged and cannot be read ({type(exc).__name__})", "damaged") from exc
    if len(doc.blocks) > MAX_BLOCKS:
        raise IngestError(f"the {kind} has more than {MAX_BLOCKS} paragraphs; split it", "too_large")
    if not any((b.text.strip() or b.rows) for b in doc.blocks if b.kind != "heading"):
        raise IngestError("the file has no text to index", "no_text")
    return doc
