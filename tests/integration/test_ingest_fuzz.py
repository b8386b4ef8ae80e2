"""Fuzzing ingestion: random and mutated bytes under every supported extension. No exception escapes, every
result is ingested or an error with a reason (and its code), each within bounded time."""
from __future__ import annotations

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.formats import SUFFIXES
from rag.ingest import Uploader

OK = {"added", "updated", "unchanged", "draft"}


def seeds() -> dict[str, bytes]:
    """One small valid file per format, for the mutations to start from."""
    import docx
    import openpyxl
    from fpdf import FPDF
    from pptx import Presentation

    out = {".md": "---\ntitle: 说明\ntags: [a, b]\n---\n# 标题\n\n正文 text\n\n| a | b |\n|---|---|\n| 1 | 2 |\n".encode(),
           ".markdown": b"# T\n\n- one\n- two\n",
           ".txt": "第一段\n\n第二段 second\n".encode(),
           ".html": b"<html><head><title>T</title></head><body><h1>H</h1><p>para</p><table><tr><td>1</td></tr></table></body></html>",
           ".htm": b"<p>hello</p><ul><li>x</li></ul>",
           ".csv": "产品,价格\n星图,100\n".encode()}
    d = docx.Document()
    d.add_heading("标题", 1)
    d.add_paragraph("正文")
    buf = io.BytesIO()
    d.save(buf)
    out[".docx"] = buf.getvalue()
    wb = openpyxl.Workbook()
    wb.active.append(["a", "b"])
    wb.active.append([1, 2])
    buf = io.BytesIO()
    wb.save(buf)
    out[".xlsx"] = buf.getvalue()
    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Title"
    slide.placeholders[1].text = "body"
    buf = io.BytesIO()
    prs.save(buf)
    out[".pptx"] = buf.getvalue()
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Hello PDF world")
    out[".pdf"] = bytes(pdf.output())
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (240, 60), "white")
    ImageDraw.Draw(im).text((10, 12), "Price 100", fill="black", font=ImageFont.load_default(size=28))
    for suffix, kind in ((".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG")):
        buf = io.BytesIO()
        im.save(buf, kind)
        out[suffix] = buf.getvalue()
    assert set(out) == set(SUFFIXES)
    return out


SEEDS = seeds()


@st.composite
def hostile(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(SUFFIXES))
    if draw(st.booleans()):
        return suffix, draw(st.binary(max_size=4096))
    data = bytearray(SEEDS[draw(st.sampled_from(SUFFIXES))] if draw(st.integers(0, 4)) == 0 else SEEDS[suffix])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i: i + draw(st.integers(1, 512))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[i:i] = data[i: i + draw(st.integers(1, 256))] * draw(st.integers(1, 50))
    return suffix, bytes(data)


@pytest.fixture(scope="module")
def ingestor(tmp_path_factory):
    from bot.app import open_knowledge
    from bot.settings import Settings
    from tests.conftest import EMBED_CACHE

    knowledge = open_knowledge(Settings(data_dir=tmp_path_factory.mktemp("fuzz"), embed_cache=EMBED_CACHE))
    yield knowledge.ingestor
    knowledge.ingestor.close()
    knowledge.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=hostile())
def test_random_and_mutated_files_are_ingested_or_refused_with_a_reason(ingestor, case):
    suffix, data = case
    t = time.perf_counter()
    res = ingestor.ingest_bytes(data, f"fuzz{suffix}", Uploader("fuzz", "admin", "default"))
    assert time.perf_counter() - t < ingestor.sandbox.limits.wall_seconds + 10
    assert res.status in OK or (res.status == "error" and res.reason and res.code), res


def test_every_seed_is_ingested(ingestor):
    for suffix, data in SEEDS.items():
        res = ingestor.ingest_bytes(data, f"seed{suffix}", Uploader("fuzz", "admin", "default"))
        assert res.status in OK, (suffix, res)
