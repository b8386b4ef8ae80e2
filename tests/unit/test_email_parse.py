"""Unit tests for connectors.email.mime: real Chinese-charset mail, fixtures, and synthetic cases."""

from __future__ import annotations

import base64
import json
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from connectors.email import ParsedEmail, UnparseableEmail, parse_email
from connectors.email.mime import strip_quoted

CNMAIL = Path(__file__).resolve().parents[2].parent / "shared" / "cnmail"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
CRLF = b"\r\n"


def _cnmail_cases() -> list:
    expected = CNMAIL / "expected.jsonl"
    if not expected.is_file():
        reason = f"real-mail corpus not found at {CNMAIL} (it lives beside the project, never in it)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="cnmail-absent")]
    rows = [json.loads(line) for line in expected.read_text("utf-8").splitlines() if line.strip()]
    return [pytest.param(row, id=row["file"]) for row in rows]


def _cnmail(name: str) -> ParsedEmail:
    path = CNMAIL / name
    if not path.is_file():
        pytest.skip(f"real-mail corpus not found at {CNMAIL}")
    return parse_email(path.read_bytes())


def raw_mail(body: bytes | str = b"", *headers: str | bytes,
             ctype: str = 'text/plain; charset="utf-8"', cte: str = "8bit") -> bytes:
    """A single-part message from literal header lines (for bytes the stdlib would not write)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [h if isinstance(h, bytes) else h.encode("utf-8") for h in headers]
    names = {ln.split(b":", 1)[0].lower() for ln in lines}
    defaults = {b"from": "From: Alice <alice@example.com>", b"to": "To: bob@example.com",
                b"subject": "Subject: hello", b"message-id": "Message-ID: <m1@example.com>",
                b"date": "Date: Mon, 04 Mar 2024 10:00:00 +0800"}
    lines += [v.encode() for k, v in defaults.items() if k not in names]
    lines += [b"MIME-Version: 1.0", f"Content-Type: {ctype}".encode(),
              f"Content-Transfer-Encoding: {cte}".encode()]
    return CRLF.join(lines) + CRLF + CRLF + body


# --- the real-mail corpus -----------------------------------------------------------------------

@pytest.mark.parametrize("case", _cnmail_cases())
def test_cnmail_expected_values(case: dict) -> None:
    parsed = parse_email((CNMAIL / case["file"]).read_bytes())
    assert parsed.from_name == case["from_name"]
    assert parsed.subject == case["subject"]
    assert parsed.message_id == case["message_id"]
    assert parsed.in_reply_to == case["in_reply_to"]
    for snippet in case["body_contains"]:
        assert snippet in parsed.new_text
        assert snippet in parsed.body_text
    assert [a.filename for a in parsed.attachments] == case["attachments"]
    # Every one of them came through a mailing list, and only 15.eml has damaged bytes.
    assert parsed.auto_reason == "List-Id header"
    assert parsed.body_text.count("\ufffd") == (3 if case["file"] == "15.eml" else 0)
    for marker in ("发件人", "寄件者", "原始", "邮件原件", "Original Message", "写道", "wrote:",
                   "Mailing list info", "\n>"):
        assert marker not in parsed.new_text
    json.dumps(parsed.to_json(), ensure_ascii=False)


def test_cnmail_names_stdlib_gets_wrong() -> None:
    usb = _cnmail("22.eml")  # '=?gb2312?B?8KnT7iCX7g==?=' holds GBK-only 楊
    assert usb.to[1] == ("皓宇 楊", "ipis.yang@gmail.com")
    assert "To: 皓宇 楊 <ipis.yang@gmail.com>" in usb.body_text
    intel = _cnmail("25.eml")  # ISO-2022-JP with the CP50220 extension character 昀
    assert intel.to[0] == ("Bruce Lee (李昀峻)", "Bruce_Lee@quantatw.com")
    assert "From: Bruce Lee (李昀峻) <Bruce_Lee@quantatw.com>" in intel.body_text
    assert intel.new_text == "Please apply this spec on smbios-mdr through your Intel channel.\n\nThanks,\nKwin."
    assert "-----原始郵件-----" in _cnmail("20.eml").body_text  # 郵 is GBK-only
    recall = _cnmail("26.eml")
    assert recall.new_text.startswith("CS20 CTCchien 希望回收這封郵件 [phosphor-ipmi-flash:")


def test_cnmail_body_choice_and_quote_position() -> None:
    html_first = _cnmail("15.eml")  # text/html body, then mailman's text/plain footer
    assert html_first.new_text.startswith("This change makes sense.\n\nOn my computer, the last CPU")
    top_quoted = _cnmail("03.eml")  # '>' history on top, new text below
    assert top_quoted.new_text.startswith("另外，我们建议的随机读pattern（也是我们测试关注的）是\n")
    assert "我不清楚" not in top_quoted.new_text and "我不清楚" in top_quoted.body_text
    assert _cnmail("11.eml").new_text == ("Hi Jaegeuk,\nChao's patch  fix should can fix this warning:\n"
                                         "f2fs: fix to don't call f2fs_stop_checkpoint in spinlock coverage thanks!")
    assert _cnmail("20.eml").new_text == "Great! Thank you, Taylor.\n\nFigo"
    assert _cnmail("05.eml").reply_to == [("狗卷", "3064617854@qq.com")]


def test_cnmail_attachments() -> None:
    image = _cnmail("09.eml").attachments[0]
    assert (image.content_type, image.inline) == ("image/png", True)
    assert image.content_id == "1ab8ac0$1$16df2da4617$Coremail$dzg0528$163.com"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n") and len(image.data) == 31146
    patch = _cnmail("13.eml").attachments[0]  # RFC 2231 filename*0 / filename*1
    assert (patch.content_type, patch.inline) == ("text/plain", False)
    assert patch.data.startswith(b"From a493d84c0085fb87d747bebec08ee014e32fc81a Mon Sep 17")
    assert "Mailing list info" in _cnmail("13.eml").body_text  # the footer part is shown, not attached


# --- fixtures -------------------------------------------------------------------------------------

FIXTURE_EXPECTED = {
    "outlook_html_reply_gbk.eml": {
        "from_name": "楊 明", "subject": "回复: 询价：工业传感器", "auto_reason": None,
        "new_text": "王经理您好：\n附件是更新后的報價，含税单价 12.5 元。\n\n楊 明\n华东区销售",
        "attachments": [("image001.png", "image/png", 48, True, "logo001@example.cn")], "defects": [],
    },
    "out_of_office_zh.eml": {
        "from_name": "张伟", "subject": "自动回复: 关于下季度报价",
        "auto_reason": "Auto-Submitted: auto-generated",
        "new_text": "我正在休假，3月11日返回。紧急事务请联系李娜。", "attachments": [], "defects": [],
    },
    "qq_reply_damaged.eml": {
        "from_name": "赵六", "subject": "回复：合同", "auto_reason": None,
        "new_text": "李经理：\n\n合同我们已经盖章，请查收附件。\n下周二之前能安排发货吗？",
        "attachments": [("合同(盖章版).pdf", "application/pdf", 15, False, None)],
        "defects": ["MIME: CloseBoundaryNotFoundDefect", "damaged base64 repaired in a text/plain part",
                    "undecodable bytes replaced in a text/plain part (gb18030)"],
    },
}


@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTED))
def test_fixtures(name: str) -> None:
    parsed = parse_email((FIXTURES / name).read_bytes())
    want = FIXTURE_EXPECTED[name]
    got = {
        "from_name": parsed.from_name, "subject": parsed.subject, "auto_reason": parsed.auto_reason,
        "new_text": parsed.new_text, "defects": parsed.defects,
        "attachments": [(a.filename, a.content_type, len(a.data), a.inline, a.content_id)
                        for a in parsed.attachments],
    }
    assert got == want


def test_fixture_html_history_is_in_body_text_only() -> None:
    parsed = parse_email((FIXTURES / "outlook_html_reply_gbk.eml").read_bytes())
    assert parsed.body_text.endswith("________________________________\n发件人: 王强 <wangqiang@buyer.example.cn>\n"
                                     "发送时间: 2024年3月1日 9:12\n收件人: 楊 明 <yangming@seller.example.cn>\n"
                                     "主题: 询价：工业传感器\n\n请报一下 500 套的价格。")
    assert parsed.references == ["<1709255520.123@buyer.example.cn>"]
    assert parsed.date is not None and parsed.date.isoformat() == "2024-03-01T02:30:00+00:00"


# --- loop safety (RFC 3834) -----------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "reason"), [
    (("Auto-Submitted: auto-replied",), "Auto-Submitted: auto-replied"),
    (("Auto-Submitted: Auto-Generated; owner-email=x@example.com",), "Auto-Submitted: auto-generated"),
    (("Return-Path: < >",), "Return-Path: <>"),
    (("List-Id: Weekly deals <deals.lists.example.com>",), "List-Id header"),
    (("List-Unsubscribe: <mailto:leave@example.com>",), "List-Unsubscribe header"),
    (("Precedence: bulk",), "Precedence: bulk"),
    (("Precedence: junk",), "Precedence: junk"),
    (("Precedence: list",), "Precedence: list"),
    (("X-Auto-Response-Suppress: OOF, AutoReply",), "X-Auto-Response-Suppress: OOF, AutoReply"),
    (("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>",),
     "automated sender MAILER-DAEMON@mx.example.com"),
    (("From: postmaster@example.com",), "automated sender postmaster@example.com"),
    (("Subject: Out of Office: 3/4-3/8",), "automatic-reply subject: Out of Office"),
    (("Subject: Automatic reply: quote request",), "automatic-reply subject: Automatic reply"),
    (("Subject: =?utf-8?B?6Ieq5Yqo5Zue5aSNOiDmiqXku7c=?=",), "automatic-reply subject: 自动回复"),
    (("Subject: =?utf-8?B?44CQ5LyR5YGH44CR5oql5Lu3?=",), "automatic-reply subject: 休假"),
])
def test_auto_reason(headers: tuple[str, ...], reason: str) -> None:
    assert parse_email(raw_mail("ok", *headers)).auto_reason == reason


def test_out_of_office_built_with_stdlib() -> None:
    msg = EmailMessage()
    msg["From"] = "李娜 <lina@customer.example.cn>"
    msg["To"] = "sales@seller.example.cn"
    msg["Subject"] = "自动回复：报价单"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("您好，我正在休假。")
    parsed = parse_email(msg.as_bytes())
    assert (parsed.auto_reason, parsed.from_name, parsed.new_text) == \
        ("Auto-Submitted: auto-replied", "李娜", "您好，我正在休假。")


def test_list_newsletter_built_with_stdlib() -> None:
    msg = EmailMessage()
    msg["From"] = "Deals <news@shop.example.com>"
    msg["To"] = "buyer@example.com"
    msg["Subject"] = "本周特价"
    msg["List-Id"] = "<weekly.shop.example.com>"
    msg.set_content("特价商品……")
    assert parse_email(msg.as_bytes()).auto_reason == "List-Id header"


@pytest.mark.parametrize("extra", [(), ("Auto-Submitted: no",), ("Precedence: first-class",)])
def test_normal_reply_may_be_answered(extra: tuple[str, ...]) -> None:
    mail = raw_mail("好的，请报价。\n\n> 需要多少套？", "Subject: Re: 询价", "In-Reply-To: <q1@example.com>",
                    "Return-Path: <alice@example.com>", *extra)
    parsed = parse_email(mail)
    assert parsed.auto_reason is None
    assert parsed.new_text == "好的，请报价。"


# --- quoted history, signatures and footers -------------------------------------------------------

QUOTES = {
    "gt-quoted": ("好的，明天发货。\n\n> 请问什么时候发货？\n> 谢谢", "好的，明天发货。"),
    "原始邮件": ("收到，谢谢。\n\n-----原始邮件-----\n发件人: 张三\n主题: 报价\n\n请查收", "收到，谢谢。"),
    "qq-原始邮件": ("同意。\n\n------------------ 原始邮件 ------------------\n发件人: \"张三\"<z@x.cn>;\n"
                  "发送时间: 2024年3月1日(星期五) 上午9:00\n\n旧内容", "同意。"),
    "邮件原件": ("Thanks.\n-----邮件原件-----\n发件人: Jaegeuk Kim <jaegeuk@kernel.org>\n旧", "Thanks."),
    "Original Message": ("Please see the attached quote.\n\n-----Original Message-----\nFrom: Bob\n"
                         "Sent: Monday\n\nold text", "Please see the attached quote."),
    "发件人-ascii-colon": ("价格可以再低一点吗？\n\n发件人: 王强 <wq@example.cn>\n发送时间: 2024年3月1日 9:12\n"
                       "收件人: 李娜\n主题: 报价\n\n旧", "价格可以再低一点吗？"),
    "发件人-fullwidth-colon": ("可以。\n发件人：王强\n时间：2024年3月1日\n收件人：李娜\n主题：报价\n旧", "可以。"),
    "From-block": ("Sounds good.\n\nFrom: John Smith <john@example.com>\nSent: Friday, March 1, 2024 9:12 AM\n"
                   "To: Li Na <lina@example.cn>\nSubject: RE: quote\n\nold", "Sounds good."),
    "bold-From-block": ("OK\n\n*From:* John <j@example.com>\n*Sent:* Friday\n*To:* Li\n\nold", "OK"),
    "在-写道-history": ("请看附件。\n\n在 2024年1月1日 星期一 10:00，\"张三\" <z@x.cn> 写道：\n\n旧内容没有引用符号",
                     "请看附件。"),
    "于-写道-gmail": ("没问题。\n\n张三 <z@x.cn> 于2024年1月1日周一 10:00写道：\n> 旧内容", "没问题。"),
    "On-wrote": ("Works for me.\n\nOn Mon, Jan 1, 2024 at 10:00 AM John <j@example.com> wrote:\n> old\n> text",
                 "Works for me."),
    "On-wrote-wrapped": ("Fine.\n\nOn Mon, Jan 1, 2024 at 10:00 AM John Smith <\njohn@example.com> wrote:\n\n"
                         "> old", "Fine."),
    "寄件者": ("謝謝。\n\n寄件者: Cyril Hrubis\n已傳送: 星期二, 2025 年 3 月 18 日 下午 07:19\n收件者: Edward\n"
            "主旨: Re: 報價\n\n舊內容", "謝謝。"),
    "outlook-rule": ("收到。\n\n________________________________\nFrom: Bob <b@example.com>\nSent: Monday\n旧",
                     "收到。"),
    "mailman-footer": ("Agreed.\n\n_______________________________________________\nSales mailing list\n"
                       "sales@lists.example.com\nhttps://lists.example.com/listinfo/sales", "Agreed."),
    "signature": ("明天见。\n\n-- \n张三\n销售经理 | 13800000000", "明天见。"),
    "sent-from-phone": ("好的\n\n发自我的iPhone\n\n------------------ Original ------------------\n旧",
                        "好的"),
    "quote-on-top": ("在 2024/1/1 10:00, 张三 写道:\n> 能便宜点吗？\n> \n\n最低九折。\n王五", "最低九折。\n王五"),
    "interleaved": ("> 数量？\n500 套。\n\n> 交期？\n两周。", "500 套。\n\n两周。"),
}


@pytest.mark.parametrize(("text", "expected"), list(QUOTES.values()), ids=list(QUOTES))
def test_strip_quoted_markers(text: str, expected: str) -> None:
    assert strip_quoted(text) == expected


@pytest.mark.parametrize("text", [
    "谢谢！\n\n此致\n敬礼\n张三\n华东区销售部",      # Chinese closers are not a signature
    "Best regards,\nJohn Smith\nSales Director",
    "From: our Shenzhen factory, 500 units ship Monday.\nPlease confirm.",
    "Schedule\n______________\nMonday: visit\nTuesday: demo",
    "He wrote: the price is final.\nPlease confirm by Friday.",
])
def test_strip_quoted_leaves_new_text_alone(text: str) -> None:
    assert strip_quoted(text) == text


def test_strip_quoted_crlf_and_whitespace() -> None:
    assert strip_quoted("\r\n\r\nHi   \r\n\r\n\r\n\r\nthere\r\n> old\r\n") == "Hi\n\nthere"


# --- bodies ---------------------------------------------------------------------------------------

HTML = """<html><head><title>t</title><style>p {color: red}</style><script>alert('x')</script></head>
<body><div>您好，</div><p>报价如下：</p><ul><li>传感器 A：12.5 元</li><li>传感器 B：18 元</li></ul>
<div>含税&nbsp;&nbsp;价格<br>有效期 30 天</div><!-- a comment -->
<table><tr><td>型号</td><td>数量</td></tr><tr><td>A</td><td>500</td></tr></table>
<div class="gmail_quote">On Mon, Jan 1, 2024 at 10:00 AM Bob &lt;bob@example.com&gt; wrote:<br>
<blockquote><div>请报价</div><div>谢谢</div></blockquote></div></body></html>"""

HTML_TEXT = ("您好，\n报价如下：\n- 传感器 A：12.5 元\n- 传感器 B：18 元\n含税  价格\n有效期 30 天\n型号 数量\nA 500\n"
             "On Mon, Jan 1, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> 请报价\n> 谢谢")


def test_html_only_body() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "报价"
    msg.set_content(HTML, subtype="html")
    parsed = parse_email(msg.as_bytes())
    assert parsed.body_text == HTML_TEXT
    assert parsed.new_text == HTML_TEXT.split("\nOn Mon")[0]
    assert parsed.attachments == []


def test_alternative_prefers_plain_when_it_has_content() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "x"
    msg.set_content("纯文本版本\n")
    msg.add_alternative("<p>HTML 版本</p>", subtype="html")
    assert parse_email(msg.as_bytes()).body_text == "纯文本版本"


@pytest.mark.parametrize("plain", ["", "\n\n", "-- \nSales mailing list\nhttps://lists.example.com/listinfo/sales\n",
                                   "HTML 邮件，请在浏览器中查看。\n"])
def test_alternative_uses_html_when_plain_is_empty_footer_or_stub(plain: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "x"
    msg.set_content(plain or " ")
    msg.add_alternative(HTML, subtype="html")
    assert parse_email(msg.as_bytes()).body_text == HTML_TEXT


def test_nested_multiparts_with_inline_image_and_attachment() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Li <li@example.cn>", "b@example.com", "合同"
    msg.set_content("请查收合同。\n")
    msg.add_alternative('<p>请查收合同。</p><img src="cid:logo@x">', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", "image", "png", cid="<logo@x>", filename="logo.png")
    msg.add_attachment(b"%PDF-1.7 fake", maintype="application", subtype="pdf", filename="合同.pdf")
    msg.add_attachment(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", maintype="text", subtype="calendar")
    parsed = parse_email(msg.as_bytes())
    assert parsed.body_text == "请查收合同。"
    assert [(a.filename, a.content_type, a.data, a.inline, a.content_id) for a in parsed.attachments] == [
        ("logo.png", "image/png", b"\x89PNG fake", True, "logo@x"),
        ("合同.pdf", "application/pdf", b"%PDF-1.7 fake", False, None),
        ("attachment-3.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", False, None),
    ]
    assert parsed.to_json()["attachments"][1] == {"name": "合同.pdf", "type": "application/pdf", "size": 13,
                                                  "inline": False, "content_id": None}


def test_forwarded_message_is_an_attachment() -> None:
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "c@example.com", "原始询价"
    inner.set_content("需要 500 套")
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "a@example.com", "b@example.com", "Fwd: 原始询价"
    outer.set_content("转给你处理。\n")
    outer.add_attachment(inner)
    parsed = parse_email(outer.as_bytes())
    assert parsed.body_text == "转给你处理。"
    (att,) = parsed.attachments
    assert (att.filename, att.content_type) == ("attachment-1.eml", "message/rfc822")
    assert parse_email(att.data).subject == "原始询价"


def test_five_megabyte_attachment() -> None:
    blob = bytes(random.Random(7).getrandbits(8) for _ in range(256)) * (5 * 1024 * 4)
    assert len(blob) == 5 * 1024 * 1024
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "大附件"
    msg.set_content("附件是产品目录。\n")
    msg.add_attachment(blob, maintype="application", subtype="zip", filename="产品目录 2024.zip")
    parsed = parse_email(msg.as_bytes())
    (att,) = parsed.attachments
    assert (att.filename, att.content_type, att.data == blob) == ("产品目录 2024.zip", "application/zip", True)
    assert parsed.to_json()["attachments"][0]["size"] == 5 * 1024 * 1024
    assert parsed.new_text == "附件是产品目录。" and parsed.defects == []


def test_truncated_base64_part_is_repaired_not_fatal() -> None:
    encoded = base64.b64encode("合同已盖章，请查收。".encode("utf-8")).decode()  # 40 characters
    mail = raw_mail(encoded[:33] + "\r\n", cte="base64")  # cut mid-quantum, one dangling character
    parsed = parse_email(mail)
    assert parsed.body_text == "合同已盖章，请查"
    assert parsed.defects == ["damaged base64 repaired in a text/plain part"]


def test_corrupt_base64_with_junk_and_truncated_multipart() -> None:
    encoded = base64.b64encode("第一行\n第二行\n".encode("gb18030")).decode()
    mail = raw_mail(("--b1\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     + encoded[:8] + "!!**" + encoded[8:] + "\r\n").encode(), ctype='multipart/mixed; boundary="b1"')
    parsed = parse_email(mail)
    assert parsed.body_text == "第一行\n第二行"
    assert parsed.defects == ["MIME: CloseBoundaryNotFoundDefect", "damaged base64 repaired in a text/plain part"]


@pytest.mark.parametrize("garbage", [
    b"", b"   \r\n\t\r\n", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"just some words, no headers at all\n", b"Note: buy milk\n\nand eggs",
    bytes(random.Random(3).getrandbits(8) for _ in range(4096)),
])
def test_garbage_is_unparseable(garbage: bytes) -> None:
    with pytest.raises(UnparseableEmail):
        parse_email(garbage)


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_email("From: a@example.com\n\nhi")  # type: ignore[arg-type]


def test_headers_only_and_mbox_line() -> None:
    parsed = parse_email(b"From alice@example.com Mon Mar  4 10:00:00 2024\nFrom: alice@example.com\nSubject: hi\n")
    assert (parsed.from_addr, parsed.subject, parsed.body_text, parsed.new_text) == ("alice@example.com", "hi", "", "")


# --- charsets -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("charset", "body", "text"), [
    ("gb2312", "報價楊郵".encode("gbk"), "報價楊郵"),                       # labelled GB2312, really GBK
    ("GB2312", "€".encode("gb18030") + "单".encode("gbk"), "€单"),          # a GB18030-only character
    ("gbk", "您好".encode("gbk"), "您好"),
    ("big5", "報價㗎".encode("big5hkscs"), "報價㗎"),                      # HKSCS character
    ("big5", "報價€".encode("cp950"), "報價€"),                            # CP950 euro sign
    ("iso-2022-jp", b"\x1b$BM{z4=T\x1b(B san", "李昀峻 san"),              # CP50220 extension (昀)
    ("iso-2022-jp", b"\x1b$B2sI|\x1b(B\r\n\x1b$B2sJ$", "回復\n回覆"),  # no ESC ( B at the end
    ("utf-8", "报价单".encode("gbk"), "报价单"),                            # labelled UTF-8, really GBK
    ("x-unknown", "报价".encode("utf-8"), "报价"),
    (None, "报价".encode("utf-8"), "报价"),                                # undeclared: sniffed
    (None, "报价".encode("gbk"), "报价"),
    ("us-ascii", "报价".encode("gbk"), "报价"),
    ("iso-8859-1", "café – 5€".encode("cp1252"), "café – 5€"),
])
def test_body_charsets(charset: str | None, body: bytes, text: str) -> None:
    ctype = f"text/plain; charset={charset}" if charset else "text/plain"
    parsed = parse_email(raw_mail(body, ctype=ctype))
    assert (parsed.body_text, parsed.defects) == (text, [])


@pytest.mark.parametrize("cte", ["quoted-printable", "quoted-printable ", "Quoted-Printable"])
def test_quoted_printable_gb2312(cte: str) -> None:
    body = b"-----=D4=AD=CA=BC=E0]=BC=FE-----\r\n=C4=E3=BA=C3"  # 原始郵件 / 你好, as 20.eml writes it
    parsed = parse_email(raw_mail(body, ctype="text/plain; charset=gb2312", cte=cte))
    assert parsed.body_text == "-----原始郵件-----\n你好"


def test_html_charset_from_meta_when_header_has_none() -> None:
    html = '<html><head><meta charset="gbk"></head><body><p>价格</p></body></html>'.encode("gbk")
    assert parse_email(raw_mail(html, ctype="text/html")).body_text == "价格"


def test_format_flowed_is_unwrapped() -> None:
    body = "This line is soft \nwrapped here.\n> quoted soft \n> wrap\n-- \nsig"
    parsed = parse_email(raw_mail(body, ctype="text/plain; charset=utf-8; format=flowed"))
    assert parsed.body_text == "This line is soft wrapped here.\n> quoted soft wrap\n-- \nsig"
    assert parsed.new_text == "This line is soft wrapped here."


# --- headers --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "decoded"), [
    (b"=?utf-8?B?5oql5Lu35Y2V?=", "报价单"),
    (b"=?utf-8?B?5oql5A==?= =?utf-8?B?u7fljZU=?=", "报价单"),          # a character split over two words
    (b"=?utf-8?Q?=E6=8A=A5=E4=BB=B7?=\xe5\x8d\x95", "报价单"),          # no space, raw UTF-8 after it
    (b"=?utf-8?Q?hello world?= again", "hello world again"),              # space inside a Q word
    (b"=?gb2312?B?l+4=?= Ming", "楊 Ming"),                                # GBK-only under a GB2312 label
    (b"=?x-unknown?B?5oql5Lu3?=", "报价"),                                 # unknown charset: sniffed
    (b"=?utf-8*zh-cn?B?5oql5Lu3?=", "报价"),                               # RFC 2231 language suffix
    (b"=?iso-2022-jp?B?QnJ1Y2UgTGVlICgbJEJNe3o0PVQbKEIp?=", "Bruce Lee (李昀峻)"),
    (b"=?big5?b?pl7C0DogIFtQQVRDSF0=?=", "回覆:  [PATCH]"),
    ("回复：合同".encode("gbk"), "回复：合同"),                                # raw 8-bit GBK
    (b"Re: =?utf-8?B?5oql5Lu3?=\r\n =?utf-8?B?5Y2V?= (v2)", "Re: 报价单 (v2)"),
])
def test_subject_decoding(raw: bytes, decoded: str) -> None:
    parsed = parse_email(raw_mail("x", b"Subject: " + raw))
    assert parsed.subject == decoded
    assert parsed.defects == []


@pytest.mark.parametrize(("raw", "decoded"), [
    (b"=?utf-8?B?5oql5Lu3", "报价"),                                        # never terminated
    (b"=?utf-8?B?5oql!5Lu3*?=", "报价"),                                    # junk inside base64
    (b"=?utf-8?B?5oql5Lu35?= ok", "报价 ok"),                               # a dangling sixth of a byte
    (b"=?utf-8?B?5oql5L?=", "报\ufffd"),                                    # bytes of half a character
])
def test_broken_encoded_word_is_repaired(raw: bytes, decoded: str) -> None:
    parsed = parse_email(raw_mail("x", b"Subject: " + raw))
    assert parsed.subject == decoded
    assert parsed.defects == ["undecodable header repaired: Subject"]


def test_addresses() -> None:
    mail = raw_mail(
        "x",
        'From: "=?utf-8?B?5byg5LiJ?=" <zhang@example.cn>',
        'To: "Bills, Jason M" <jason@example.com>, =?utf-8?B?5p2O5ZubLCDlvKA=?= <li@example.cn>,',
        " undisclosed-recipients:;",
        "Cc: =?gb2312?B?0/TA1w==?= <yu@example.cn>, plain@example.com (Comment Name)",
        "Reply-To: <sales@example.cn>",
    )
    parsed = parse_email(mail)
    assert (parsed.from_name, parsed.from_addr) == ("张三", "zhang@example.cn")
    assert parsed.to == [("Bills, Jason M", "jason@example.com"), ("李四, 张", "li@example.cn")]
    assert parsed.cc == [("郁雷", "yu@example.cn"), ("Comment Name", "plain@example.com")]
    assert parsed.reply_to == [("", "sales@example.cn")]


def test_raw_8bit_names_are_sniffed() -> None:
    mail = raw_mail("x", b"From: " + "张三".encode("gbk") + b" <zhang@example.cn>",
                    b'To: "' + "李四, 王五".encode("utf-8") + b'" <li@example.cn>')
    parsed = parse_email(mail)
    assert (parsed.from_name, parsed.from_addr) == ("张三", "zhang@example.cn")
    assert parsed.to == [("李四, 王五", "li@example.cn")]
    assert parsed.headers["from"] == "张三 <zhang@example.cn>"


def test_threading_ids_and_headers_dict() -> None:
    mail = raw_mail(
        "x",
        "Message-ID:   <abc@example.com>  ",
        "In-Reply-To: <parent@example.com> (Bob's message of \"Mon, 4 Mar 2024\")",
        "References: <root@example.com>\r\n\t<parent@example.com>",
        "Received: from first",
        "Received: from second",
        "X-Note: =?utf-8?B?5oql5Lu3?=",
    )
    parsed = parse_email(mail)
    assert (parsed.message_id, parsed.in_reply_to) == ("<abc@example.com>", "<parent@example.com>")
    assert parsed.references == ["<root@example.com>", "<parent@example.com>"]
    assert parsed.headers["received"] == "from first"
    assert parsed.headers["x-note"] == "报价"
    assert parsed.date is not None and parsed.date.isoformat() == "2024-03-04T10:00:00+08:00"


def test_bad_date_is_a_defect() -> None:
    parsed = parse_email(raw_mail("x", "Date: the day after tomorrow"))
    assert parsed.date is None
    assert parsed.defects == ["unparseable Date header"]


@pytest.mark.parametrize(("disposition", "name"), [
    ("attachment; filename*=utf-8''%E6%8A%A5%E4%BB%B7.pdf", "报价.pdf"),
    ("attachment; filename*0*=gbk''%B1%A8; filename*1*=%BC%DB.pdf", "报价.pdf"),
    ('attachment; filename*0="long-name-"; filename*1="continued.pdf"', "long-name-continued.pdf"),
    ('attachment; filename="=?GBK?Q?=B1=A8=BC=DB.pdf?="', "报价.pdf"),           # Coremail style
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="C:\\Users\\li\\报价.pdf"', "报价.pdf"),
])
def test_attachment_filenames(disposition: str, name: str) -> None:
    part = f"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: {disposition}\r\n" \
           "Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    parsed = parse_email(raw_mail(part, ctype='multipart/mixed; boundary="b"'))
    assert [(a.filename, a.data) for a in parsed.attachments] == [(name, b"%PDF")]


def test_raw_8bit_gbk_filename() -> None:
    part = (b'--b\r\nContent-Type: application/vnd.ms-excel; name="' + "报价.xls".encode("gbk") +
            b'"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n')
    parsed = parse_email(raw_mail(part, ctype='multipart/mixed; boundary="b"'))
    assert [(a.filename, a.data) for a in parsed.attachments] == [("报价.xls", b"\x00\x01\x02")]


# --- robustness -----------------------------------------------------------------------------------

def _samples() -> list[bytes]:
    samples = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
    if CNMAIL.is_dir():
        samples += [p.read_bytes() for p in sorted(CNMAIL.glob("*.eml"))[:6]]
    return samples


def test_mutilated_mail_never_raises_anything_else() -> None:
    rng = random.Random(2024)
    parsed = 0
    for sample in _samples():
        for _ in range(25):
            data = bytearray(sample)
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            cut = bytes(data[: rng.randrange(1, len(data) + 1)])
            for candidate in (bytes(data), cut):
                try:
                    result = parse_email(candidate)
                except UnparseableEmail:
                    continue
                json.dumps(result.to_json())
                parsed += 1
    assert parsed > 100
