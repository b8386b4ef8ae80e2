"""Feishu pieces without a server: the official decryption sample, the signature, event parsing, cards, frames."""
from __future__ import annotations

import base64
import json

import pytest

from connectors.feishu.crypto import SignatureError, decrypt, signature, verify, verify_token
from connectors.feishu.parse import ForeignTenant, PayloadError, parse
from connectors.feishu.render import cards, preview_card
from connectors.message import Button, Citation, Reply
from tests.fakes.feishu_api import BOT_OPEN_ID, TENANT_KEY, FakeFeishu

APP = "cli_unit0000000001"


def test_the_official_sample_decrypts_with_lark_oapi():
    """Feishu's documented example: key "test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=" is "hello world"."""
    from lark_oapi.core.utils import AESCipher

    assert AESCipher("test key").decrypt_str("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == "hello world"
    with pytest.raises(SignatureError, match="decrypt"):  # the sample's plaintext is no event: refused, not crashed
        decrypt(json.dumps({"encrypt": "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}).encode(), "test key")
    for enc in ("A" * 24, base64.b64encode(b"iv-only-16-bytes").decode(), "!!", base64.b64encode(b"y" * 20).decode()):
        with pytest.raises(SignatureError):  # an IV without ciphertext, a bad length, not base64: refused, never a crash
            decrypt(json.dumps({"encrypt": enc}).encode(), "test key")
    event = {"schema": "2.0", "header": {"token": "vt"}}
    assert decrypt(FakeFeishu.encrypt(event, "test key"), "test key") == event
    with pytest.raises(SignatureError):
        decrypt(FakeFeishu.encrypt(event, "test key"), "other key")


def test_signature_window_and_token():
    body = b'{"encrypt":"x"}'
    headers = FakeFeishu.signed_headers(body, "ek", timestamp=1_700_000_000, nonce="n1")
    assert headers["X-Lark-Signature"] == signature("1700000000", "n1", "ek", body)
    assert verify(headers, body, "ek", now=1_700_000_100) == 1_700_000_000
    for bad in ({**headers, "X-Lark-Signature": "0" * 64}, {k: v for k, v in headers.items() if k != "X-Lark-Request-Nonce"}):
        with pytest.raises(SignatureError):
            verify(bad, body, "ek", now=1_700_000_100)
    with pytest.raises(SignatureError, match="stale"):
        verify(headers, body, "ek", now=1_700_000_000 + 7200)
    with pytest.raises(SignatureError):
        verify(headers, body + b" ", "ek", now=1_700_000_100)
    verify_token({"header": {"token": "vt"}}, "vt")
    for event in ({"header": {"token": "no"}}, {"header": {}}, {"token": ""}):
        with pytest.raises(SignatureError):
            verify_token(event, "vt")


@pytest.fixture
def fake():
    f = FakeFeishu()
    f.add_app(APP, "s")
    f.add_user("ou_zw", "zw-uid", "张伟")
    return f


def read(event, **kw):
    return parse(event, tenant="t1", app_key="default", app_id=APP, tenant_key=TENANT_KEY, bot_open_id=BOT_OPEN_ID, **kw)


def test_messages_parse_to_the_senders_id_and_text_without_the_bots_mention(fake):
    dm = read(fake.message_event(APP, sender="ou_zw", text="  价格？ ", message_id="om_1"))
    assert (dm.sender_id, dm.text, dm.is_group, dm.platform_msg_id, dm.conversation_id) == ("ou_zw", "价格？", False, "om_1", "oc_p2pou_zw")
    assert dm.reply_context["inbound"] == "om_1" and dm.reply_context["message_id"] == "om_1"
    assert read(fake.message_event(APP, sender="ou_zw", text="x"), user_id_type="user_id").sender_id == "zw-uid"
    group = read(fake.message_event(APP, sender="ou_zw", text="问一下 @_user_2 的客户", chat_type="group", mention_bot=True,
                                    others=(("ou_cj", "陈静"),)))
    assert group.is_group and group.text == "问一下 @陈静 的客户"
    assert read(fake.message_event(APP, sender="ou_zw", text="闲聊", chat_type="group", others=(("ou_cj", "陈静"),))) is None
    post = {"title": "周报", "content": [[{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": " 看看 "},
                                        {"tag": "a", "href": "https://x", "text": "链接"}], [{"tag": "img", "image_key": "img_1"}]]}
    assert read(fake.message_event(APP, sender="ou_zw", msg_type="post", content=post, chat_type="group", mention_bot=True)).text == "周报\n看看 链接"
    f = read(fake.message_event(APP, sender="ou_zw", msg_type="file", content={"file_key": "file_v3_k", "file_name": "../a/报价.pdf"},
                                message_id="om_f"))
    assert f.kind == "file" and f.attachments[0].name == "报价.pdf" and f.attachments[0].ref == "file:om_f:file_v3_k"
    img = read(fake.message_event(APP, sender="ou_zw", msg_type="image", content={"image_key": "img_v3_k"}, message_id="om_i"))
    assert img.attachments[0].ref == "image:om_i:img_v3_k" and img.attachments[0].name.endswith(".png")
    bot = fake.message_event(APP, sender="ou_zw", text="hi")
    bot["event"]["sender"]["sender_type"] = "app"
    assert read(bot) is None
    with pytest.raises(ForeignTenant):
        read({**bot, "header": {**bot["header"], "app_id": "cli_other"}})
    with pytest.raises(PayloadError):
        read({"schema": "2.0", "header": {"event_type": "im.message.receive_v1", "tenant_key": TENANT_KEY}, "event": {"message": {}, "sender": {}}})
    assert read({"schema": "2.0", "header": {"event_type": "im.chat.member.bot.added_v1", "tenant_key": TENANT_KEY}, "event": {}}) is None


def test_a_card_click_is_an_action_keyed_on_its_event(fake):
    value = {"k": "confirm", "r": "pend-1", "c": "p2p", "l": "确认"}
    first = read(fake.card_event(APP, operator="ou_zw", value=value, card_message_id="om_card", chat_id="oc_1"))
    second = read(fake.card_event(APP, operator="ou_zw", value=value, card_message_id="om_card", chat_id="oc_1"))
    assert first.kind == "action" and first.action.key == "confirm" and first.action.ref == "pend-1" and not first.is_group
    assert first.platform_msg_id != second.platform_msg_id and first.reply_context["message_id"] == "om_card"
    assert read(fake.card_event(APP, operator="ou_zw", value={"k": "DROP TABLE", "r": "x"}, card_message_id="m", chat_id="c")) is None


def test_cards_carry_sources_and_buttons_and_the_preview_is_one_shared_card():
    reply = Reply(text="结论 [1]", kind="confirm", citations=[Citation(n=1, doc_id="d", title="价格表", url="https://kb/d")],
                  buttons=[Button(key="confirm", label="确认写入", ref="p1"), Button(key="edit", label="修改", ref="p1")])
    [card] = cards(reply, chat_type="group", mention="ou_zw")
    assert card["schema"] == "2.0" and card["config"]["update_multi"] is True and card["header"]["title"]["content"] == "请确认"
    els = card["body"]["elements"]
    assert els[0]["content"] == "<at id=ou_zw></at>" and any("[价格表](https://kb/d)" in e.get("content", "") for e in els)
    buttons = [c["elements"][0] for c in els[-1]["columns"]]
    assert [b["behaviors"][0]["value"] for b in buttons] == [{"k": "confirm", "r": "p1", "c": "group", "l": "确认写入"},
                                                          {"k": "edit", "r": "p1", "c": "group", "l": "修改"}]
    long = cards(Reply(text="\n\n".join("段落" * 400 for _ in range(30))))
    assert len(long) > 1 and all(len(json.dumps(c, ensure_ascii=False).encode()) < 30_000 for c in long)
    assert preview_card("正在写", "zh")["config"]["update_multi"] is True


def test_multi_part_long_connection_payloads_are_put_together():
    from connectors.feishu.stream import LongConnection

    conn = LongConnection.__new__(LongConnection)
    conn._parts = {}
    assert conn._combine("m", 3, 0, b"ab") is None and conn._combine("m", 3, 2, b"ef") is None
    assert conn._combine("m", 3, 1, b"cd") == b"abcdef" and conn._parts == {}
    assert conn._combine("x", 1, 0, b"whole") == b"whole"


def test_a_part_count_that_changes_for_one_id_starts_that_payload_again():
    from connectors.feishu.stream import LongConnection

    conn = LongConnection.__new__(LongConnection)
    conn._parts = {}
    assert conn._combine("m", 3, 0, b"ab") is None
    assert conn._combine("m", 2, 1, b"cd") is None and conn._combine("m", 2, 0, b"ab") == b"abcd"


async def test_a_long_connection_event_the_sink_fails_on_is_refused_not_dropped_as_bad_json():
    """A ValueError from storing the event (not from reading it) answers 500, so Feishu delivers it again;
    a payload that is not JSON is answered 200 (it never will be) and never reaches the sink."""
    from lark_oapi.ws.const import HEADER_MESSAGE_ID, HEADER_TYPE
    from lark_oapi.ws.enum import MessageType
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame

    from connectors.feishu.stream import LongConnection

    seen = []

    async def failing(event):
        seen.append(event)
        raise ValueError("the database refused the row")

    class Socket:
        def __init__(self):
            self.sent = []

        async def send(self, raw):
            self.sent.append(raw)

    conn = LongConnection.__new__(LongConnection)
    conn._parts, conn.on_event, conn.acks, conn.refused = {}, failing, 0, 0
    conn.app = type("App", (), {"label": "feishu:test"})()

    def frame(payload: bytes) -> Frame:
        f = Frame(SeqID=1, LogID=1, service=1, method=1)
        for k, v in ((HEADER_TYPE, MessageType.EVENT.value), (HEADER_MESSAGE_ID, "m1")):
            h = f.headers.add()
            h.key, h.value = k, v
        f.payload = payload
        return f

    ws = Socket()
    await conn._data(ws, frame(json.dumps({"header": {"event_id": "e1"}}).encode()))
    await conn._data(ws, frame(b"{not json"))
    answers = []
    for raw in ws.sent:
        f = Frame()
        f.ParseFromString(raw)
        answers.append(json.loads(f.payload)["code"])
    assert answers == [500, 200] and len(seen) == 1 and conn.refused == 1


def test_text_messages_never_mention_everyone_for_the_words_of_an_answer():
    """With cards off a reply is a Feishu text message, which acts on <at user_id="all"></at>: a model's or a quoted
    sender's words must not mention the whole group."""
    from connectors.feishu.render import text_messages

    [text] = text_messages(Reply(text='请大家看 <at user_id="all"></at> 和 &lt;at user_id="ou_1"&gt;老板&lt;/at&gt;，3 < 5'))
    assert "<at" not in text and '＜at user_id="all">' in text and "3 < 5" in text
