"""What each dialect does with each block: numbering kept, tables as a platform can show them, links and
code, escaping, the agent's own sources or choices never repeated. The full outputs are in the golden
files (test_markup_golden.py); these name the rules."""
from __future__ import annotations

import json

from connectors.markup import dingtalk_markdown, dingtalk_sources, email_bodies, feishu_cards, feishu_elements, parse, plain_text, web_markdown, wecom_markdown
from connectors.markup.blocks import Link, ListBlock, Paragraph, Styled, Table, Text
from connectors.message import Button, Citation, Reply

TABLE = "| 维度 | 我们 | 星图 |\n|---|---|---|\n| 价格 | 3 万 [1] | 5 万 [2] |\n| 周期 | 4 周 | 5 个月 |"
BUTTONS = [Button(key="confirm", label="确认", ref="p1", reply="1"), Button(key="reject", label="取消", ref="p1", reply="3")]


def test_parse_keeps_the_numbers_the_nesting_and_the_inline_spans():
    blocks = parse("3. 先约 **王总**\n4. 再发[报价](https://kb/q)\n   - 附 SLA\n\n" + TABLE)
    lst, table = blocks
    assert isinstance(lst, ListBlock) and lst.ordered and lst.numbers == (3, 4)
    assert lst.items[0][0] == Paragraph((Text("先约 "), Styled("bold", (Text("王总"),))))
    assert isinstance(lst.items[1][1], ListBlock) and not lst.items[1][1].ordered
    assert Link("https://kb/q", (Text("报价"),)) in lst.items[1][0].spans  # type: ignore[union-attr]
    assert isinstance(table, Table) and len(table.header) == 3 and len(table.rows) == 2
    assert parse("<b>x</b> & y") == (Paragraph((Text("<b>x</b> & y"),)),)  # raw HTML stays text


def test_numbered_lists_keep_their_numbers_everywhere():
    reply = Reply(text="3. 先约王总\n4. 再发报价")
    for out in (plain_text(reply), wecom_markdown(reply), dingtalk_markdown(reply)):
        assert "3. 先约王总" in out and "4. 再发报价" in out
    assert '<ol start="3">' in email_bodies(reply)[1]
    assert "3. 先约王总\n4. 再发报价" in feishu_elements(reply)[0]["content"]


def test_a_table_becomes_row_lines_where_it_cannot_be_shown_and_a_table_where_it_can():
    reply = Reply(text="对比如下：", markdown="对比如下：\n\n" + TABLE)
    assert "• 价格 — 我们：3 万 [1] · 星图：5 万 [2]" in plain_text(reply)
    assert "• **价格** — 我们：3 万 [1] · 星图：5 万 [2]" in wecom_markdown(reply)
    assert "- **价格** — 我们：3 万 [1] · 星图：5 万 [2]" in dingtalk_markdown(reply)
    assert "Price: $3k" in plain_text(Reply(text="| Item | Price |\n|---|---|\n| Pro | $3k |", lang="en")).replace("Pro: ", "Price: ")
    assert "|" not in plain_text(reply) + wecom_markdown(reply) + dingtalk_markdown(reply)
    [text, table] = feishu_elements(reply)
    assert table["tag"] == "table" and [c["display_name"] for c in table["columns"]] == ["维度", "我们", "星图"]
    assert table["rows"][0] == {"c0": "价格", "c1": "3 万 [1]", "c2": "5 万 [2]"}
    many = feishu_elements(Reply(text="\n\n".join([TABLE] * 6)))
    assert [e["tag"] for e in many] == ["table"] * 5 + ["markdown"]  # a card holds five tables: the sixth as rows
    html = email_bodies(reply)[1]
    assert "<table" in html and "<th" in html and html.count("<tr>") == 3


def test_two_column_tables_read_as_key_value_lines():
    assert "• 价格：3 万" in plain_text(Reply(text="| 项目 | 内容 |\n|---|---|\n| 价格 | 3 万 |"))


def test_dingtalk_makes_single_newlines_hard_breaks_and_wecom_keeps_them():
    reply = Reply(text="第一行\n第二行\n\n第三段")
    assert dingtalk_markdown(reply) == "第一行  \n第二行\n\n第三段"
    assert wecom_markdown(reply) == plain_text(reply) == "第一行\n第二行\n\n第三段"


def test_links_code_and_emphasis_per_dialect():
    reply = Reply(text="See the *guide* at [docs](https://d.example/g) and run `copilot doctor`.", lang="en")
    assert plain_text(reply) == "See the guide at docs (https://d.example/g) and run copilot doctor."
    assert wecom_markdown(reply) == "See the guide at [docs](https://d.example/g) and run `copilot doctor`."  # no italics in WeCom
    assert dingtalk_markdown(reply) == "See the *guide* at [docs](https://d.example/g) and run `copilot doctor`."
    code = Reply(text="```toml\n[erp]\nkey = 1\n```")
    assert plain_text(code) == "[erp]\nkey = 1" and wecom_markdown(code) == "`[erp]`\n`key = 1`"
    assert feishu_elements(code)[0]["content"] == "```toml\n[erp]\nkey = 1\n```"


def test_email_html_escapes_and_never_links_a_script():
    reply = Reply(text='<script>alert(1)</script> & [x](javascript:alert(1)) [y](<java script:x>) "q" https://a.example/?a=1&b=2')
    _, html = email_bodies(reply)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html and "&quot;q&quot;" in html
    assert "href" not in html.replace('<a href="https://a.example/?a=1&amp;b=2">', "")  # the one safe link, no other


def test_citations_per_dialect_and_never_twice():
    cite = Citation(n=1, doc_id="bc", title="竞品卡 [星图]", version="3", updated="2026-11-10", url="https://kb/bc", stale_days=120)
    reply = Reply(text="约 5 个月 [1]", citations=[cite])
    assert plain_text(reply).endswith("[1] 竞品卡 [星图] v3 (2026-11-10) https://kb/bc · ⚠ 120 天未更新")
    assert '> [1] [竞品卡 (星图)](https://kb/bc) v3 (2026-11-10) · <font color="warning">⚠ 120 天未更新</font>' in wecom_markdown(reply)
    assert dingtalk_sources(reply) == "**来源**  \n[1] [竞品卡 (星图)](https://kb/bc) v3 (2026-11-10) · ⚠ 120 天未更新"
    assert dingtalk_markdown(reply, sources=False) == "约 5 个月 [1]"
    [_, rule, sources] = feishu_elements(reply)
    assert rule == {"tag": "hr"} and sources["content"].startswith("**来源**\n[1] [竞品卡 (星图)](https://kb/bc)")
    listed = Reply(text="约 5 个月 [1]\n[来源] 竞品卡", citations=[cite])
    assert "https://kb/bc" not in plain_text(listed) + wecom_markdown(listed) + dingtalk_markdown(listed)
    assert dingtalk_sources(listed) == ""


def test_buttons_become_the_typed_line_unless_the_platform_shows_them_or_the_text_has_it():
    reply = Reply(text="要写入吗？", buttons=BUTTONS, kind="confirm")
    assert plain_text(reply).endswith("回复 1 确认 / 3 取消") and wecom_markdown(reply).endswith("回复 1 确认 / 3 取消")
    assert "回复" not in json.dumps(feishu_elements(reply), ensure_ascii=False)  # the card has the real buttons
    assert feishu_elements(reply, buttons=True)[-1]["content"] == "回复 1 确认 / 3 取消"
    assert plain_text(reply.model_copy(update={"text": "要写入吗？回复 1 确认"})).count("回复") == 1


def test_feishu_cards_split_a_long_answer_under_the_limit():
    long = Reply(text="\n\n".join(f"第{i}段：" + "实施周期约四周，详见[手册](https://kb/h)。" * 30 for i in range(12)))
    cards = feishu_cards(long, limit=6000)
    assert len(cards) > 1 and all(len(json.dumps(c, ensure_ascii=False).encode()) <= 6000 for c in cards)
    assert all("[手册](https://kb/h)" in el["content"] or "手册" not in el["content"] for c in cards for el in c)


def test_the_web_chat_gets_its_markdown_unchanged():
    reply = Reply(text="plain", markdown="**bold**\n\n" + TABLE)
    assert web_markdown(reply) == reply.markdown


def test_text_never_becomes_a_tag_the_platform_acts_on():
    """The model's words, a quoted message or a document's title reach the platform's markdown as text: Feishu's
    <at id=all> (an @everyone in a group), <font> colours or <link>s must show as words, also when written as entities."""
    said = "请 <at id=all></at> 看 &lt;font color='red'&gt;降价&lt;/font&gt; 和 <link url='https://evil.example'>这里</link>，但 3 < 5 不变"
    reply = Reply(text=said, citations=[Citation(n=1, doc_id="d", title="<at id=all></at>手册", version="1")])
    feishu = json.dumps(feishu_elements(reply), ensure_ascii=False)
    for out in (wecom_markdown(reply), dingtalk_markdown(reply), feishu):
        assert "<at" not in out and "<font color='red'" not in out and "<link" not in out and "</" not in out, out
        assert "＜at id=all>" in out and "3 < 5" in out
    assert "<at id=all>" in plain_text(reply)  # plain text is shown as it is: nothing there is a tag
    assert "<@" not in wecom_markdown(Reply(text="提醒 <@zhangwei> 和 <@all>"))  # a WeCom robot's mention syntax
    _, html = email_bodies(reply)
    assert "<at" not in html and "&lt;at id=all&gt;" in html


def test_wecom_text_messages_carry_no_link_tag_from_the_words():
    """A WeCom app text message makes <a href="..."> a link whose address it hides: the words never make one."""
    from connectors.markup import wecom_parts

    [text] = wecom_parts(Reply(text='点 <a href="https://evil.example">报价单</a> 查看，3 < 5'), markdown=False)
    assert "<a" not in text and '＜a href="https://evil.example">' in text and "3 < 5" in text
