"""The same five answers (tests/data/answers/*.json: a cited list, a comparison table, a numbered draft with
buttons, a long answer that must be split, an English answer with code and links) rendered for every
platform and compared exactly with tests/golden/<platform>/. After a deliberate change to a dialect,
regenerate with `UPDATE_GOLDEN=1 pytest tests/unit/test_markup_golden.py` and read the diff."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from connectors.markup import dingtalk_parts, email_bodies, feishu_cards, web_markdown
from connectors.message import Reply
from connectors.text import text_parts
from connectors.wecom.render import render as wecom_render

REPO = Path(__file__).resolve().parents[2]
ANSWERS = sorted((REPO / "tests" / "data" / "answers").glob("*.json"))
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PLAIN_LIMIT = 1500  # a text-only platform counting characters


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1) + "\n"


def _parts(parts: list[str]) -> str:
    n = len(parts)
    return "".join((f"\n\n----- part {i}/{n} -----\n\n" if i > 1 else "") + p for i, p in enumerate(parts, 1)) + "\n"


def rendered(reply: Reply) -> dict[str, str]:
    """Each platform's output for one answer, by golden file name (without the answer's number)."""
    text, html = email_bodies(reply)
    return {
        "plain/{}.txt": _parts(text_parts(reply, PLAIN_LIMIT)),
        "wecom_text/{}.json": _json(wecom_render(reply, markdown=False, seed="golden")),
        "wecom_markdown/{}.json": _json(wecom_render(reply, markdown=True, seed="golden")),
        "dingtalk/{}.json": _json(dingtalk_parts(reply)),
        "feishu/{}.json": _json(feishu_cards(reply)),
        "email/{}.txt": text + "\n",
        "email/{}.html": html + "\n",
        "web/{}.md": web_markdown(reply) + "\n",
    }


PLATFORMS = list(rendered(Reply(text="x")))


def test_there_are_five_answers_and_a_golden_file_for_each_platform():
    assert len(ANSWERS) == 5
    if not UPDATE:
        for a in ANSWERS:
            for name in PLATFORMS:
                assert (GOLDEN / name.format(a.stem)).is_file(), f"missing {name.format(a.stem)}: run with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.split("/")[0] + p.rsplit(".", 1)[1] for p in PLATFORMS])
@pytest.mark.parametrize("answer", ANSWERS, ids=[a.stem for a in ANSWERS])
def test_golden(answer: Path, platform: str):
    reply = Reply.model_validate_json(answer.read_text(encoding="utf-8"))
    got = rendered(reply)[platform]
    path = GOLDEN / platform.format(answer.stem)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{path.relative_to(REPO)} differs: UPDATE_GOLDEN=1 regenerates it"


@pytest.mark.parametrize("answer", ANSWERS, ids=[a.stem for a in ANSWERS])
def test_every_part_is_under_its_platform_limit_and_rows_links_and_citations_stay_whole(answer: Path):
    from connectors.markup import CARD_BYTES, DINGTALK_CHARS, WECOM_BYTES, utf8_len

    reply = Reply.model_validate_json(answer.read_text(encoding="utf-8"))
    wecom = [m["markdown"]["content"] for m in wecom_render(reply, markdown=True, seed="g") if m["msgtype"] == "markdown"]
    ding, cards = dingtalk_parts(reply), feishu_cards(reply)
    assert all(utf8_len(c) <= WECOM_BYTES for c in wecom) and all(len(p) <= DINGTALK_CHARS for p in ding)
    assert all(utf8_len(json.dumps(c, ensure_ascii=False)) <= CARD_BYTES for c in cards)
    for c in reply.citations:  # each citation line whole in one part
        title = c.title.replace("[", "(").replace("]", ")")  # brackets in a link's label would end it
        assert sum(f"[{c.n}] {title}" in p or f"[{c.n}] [{title}]({c.url})" in p for p in wecom) == 1
        assert sum(f"[{c.n}] {title}" in p or f"[{c.n}] [{title}]({c.url})" in p for p in ding) == 1
    if answer.stem == "4_long_split":
        assert len(wecom) > 1 and len(ding) > 1 and [w.split("\n")[0] for w in wecom] == [f"({i}/{len(wecom)})" for i in range(1, len(wecom) + 1)]
        for i in range(1, 11):  # every link of the long answer arrives whole
            link = f"[实施手册第{i}章](https://kb.example.com/handbook/chapter-{i}?section=overview&edition=standard)"
            assert sum(link in p for p in wecom) == 1 and sum(link in p for p in ding) == 1
