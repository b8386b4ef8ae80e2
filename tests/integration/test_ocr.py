"""Scanned documents: a PDF page without a text layer, a photographed price sheet and a WeChat screenshot are read
by OCR (RapidOCR, its models inside the wheel) in the sandboxed parse process, in Chinese and English, and a
scanned page keeps its number for citations. The pictures are rendered here with Pillow and Debian's Noto CJK."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag.ingest import Uploader
from rag.retrieve import Viewer

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
pytestmark = pytest.mark.skipif(not FONT.exists(), reason=f"no CJK font at {FONT}: apt-get install -y fonts-noto-cjk (make chromium does)")


def picture(lines: list[str], *, bubbles: bool = False):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 30)
    im = Image.new("RGB", (1000, 80 + 70 * len(lines)), (237, 237, 237) if bubbles else "white")
    d = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        x, y = (40, 40 + 70 * i)
        if bubbles:  # a chat: alternating green and white speech bubbles
            x = 40 if i % 2 == 0 else 300
            d.rounded_rectangle((x - 12, y - 10, x + 24 * len(line) + 60, y + 48), 10, fill=(149, 236, 105) if i % 2 else "white")
        d.text((x, y), line, fill="black", font=font)
    return im


def encoded(im, kind: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, kind)
    return buf.getvalue()


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory):
    from bot.app import open_knowledge
    from bot.settings import Settings
    from tests.conftest import EMBED_CACHE

    k = open_knowledge(Settings(data_dir=tmp_path_factory.mktemp("ocr"), embed_cache=EMBED_CACHE))
    yield k
    k.ingestor.close()
    k.close()


ADMIN = Uploader("chenjing", "admin", "default")
READER = Viewer("default", "rep", "华东区", "zhangwei")


def test_price_sheet_and_chat_screenshot_are_read(knowledge):
    sheet = picture(["海星科技 报价单 2026", "专业版 年订阅费 ¥28 万/年", "实施周期 2–3 周", "Enterprise edition from CNY 600k per year"])
    chat = picture(["王总：你们的质保期是多久？", "张伟：标准质保 36 个月，含上门服务", "Mr Wang: OK, please send the contract"], bubbles=True)
    for data, name in ((encoded(sheet, "PNG"), "haixing-price.png"), (encoded(chat, "JPEG"), "wechat-chat.jpg")):
        res = knowledge.ingestor.ingest_bytes(data, name, ADMIN)
        assert res.status == "added", (name, res.reason)
    [hit] = knowledge.retriever.search("海星科技专业版年订阅费", READER, k=1)
    assert hit.doc_id.startswith("haixing-price") or hit.title == "haixing-price"
    assert "28" in hit.text and "2-3" in hit.text.replace("–", "-") and "Enterprise edition" in hit.text
    [hit] = knowledge.retriever.search("质保期多久 上门服务", READER, k=1)
    assert "36" in hit.text and "质保" in hit.text and "contract" in hit.text


def test_scanned_pdf_pages_are_read_with_their_numbers(knowledge):
    pages = [picture(["云鹊物流 产品手册", "第一章 公司简介"]), picture(["云鹊物流的仓储系统支持 12 个仓库", "Cold chain monitoring every 5 minutes"])]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", save_all=True, append_images=pages[1:])  # pictures only: no text layer
    res = knowledge.ingestor.ingest_bytes(buf.getvalue(), "yunque-scan.pdf", ADMIN)
    assert res.status == "added", res.reason
    [hit] = knowledge.retriever.search("云鹊物流仓储系统支持几个仓库", READER, k=1)
    assert "12" in hit.text and hit.heading.endswith("p. 2")  # the page a citation points to
    assert hit.title == "yunque-scan"
