"""Issue 21: the inbound parsers under random and mutated input (hypothesis). Whatever a sender writes, each
parser returns a message (or None) or raises its declared error, and never hangs:

  WeCom XML      connectors/wecom/crypto.parse_xml + connectors/wecom/parse.parse   -> CallbackRejected
  DingTalk JSON  connectors/dingtalk/parse.parse                                    -> PayloadError
  Feishu events  connectors/feishu/parse.parse (decrypted event JSON)                -> PayloadError
  email bytes    connectors/email/parse.parse_bytes (mime.parse_email)               -> UnparseableEmail
  and the sender check (connectors/email/authres.check_sender), which never raises.
"""
from __future__ import annotations

import json
import signal
import tempfile
import tomllib
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.dingtalk.parse import PayloadError
from connectors.dingtalk.parse import parse as dingtalk_parse
from connectors.email.authres import check_sender
from connectors.email.config import Mailbox
from connectors.email.files import Files
from connectors.email.mime import UnparseableEmail
from connectors.email.parse import parse_bytes
from connectors.feishu.parse import PayloadError as FeishuPayloadError
from connectors.feishu.parse import parse as feishu_parse
from connectors.message import InboundMessage
from connectors.wecom.crypto import CallbackRejected, parse_xml
from connectors.wecom.parse import parse as wecom_parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WECOM = [c["xml"].encode() for c in tomllib.loads((FIXTURES / "wecom" / "messages.toml").read_text("utf-8"))["case"]]
DINGTALK = [json.loads(p.read_text("utf-8"))["payload"] for p in sorted((FIXTURES / "dingtalk").glob("*.json"))]
FEISHU = [json.loads(p.read_text("utf-8"))["payload"] for p in sorted((FIXTURES / "feishu").glob("*.json"))]
EMAIL = [p.read_bytes() for p in sorted((FIXTURES / "email").glob("*.eml"))]
MB = Mailbox(imap_host="h", username="copilot@seller.example.cn", tenant="default", authserv_id="mx.seller.example.cn")
FILES = Files(Path(tempfile.mkdtemp(prefix="fuzz-mail-")))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
HANG_SECONDS = 5.0


@contextmanager
def no_hang(seconds: float = HANG_SECONDS):
    """Fail (instead of waiting forever) when one parse takes longer than `seconds`."""
    def hung(*_):
        raise TimeoutError(f"a parser ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A recorded input with random bytes flipped, inserted, deleted, duplicated or cut."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "cut", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=40) | st.sampled_from([b"<", b">", b"]]>", b"<![CDATA[", b"\r\n", b"=?utf-8?B?", b"--",
                                                                         b"boundary=", b'"', b"{", b"}", b"\\u0000", b"\x00"]))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "dup":
            data[at:at] = data[at:at + draw(st.integers(1, 200))] * draw(st.integers(1, 20))
        elif op == "cut":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:at] = other[: draw(st.integers(0, len(other)))]
    return bytes(data)


# WeCom --------------------------------------------------------------------------------------------
def wecom(raw: bytes) -> None:
    with no_hang():
        try:
            fields = parse_xml(raw)
            msg = wecom_parse(fields, tenant="t1", corp="c1")
        except CallbackRejected:
            return
    assert msg is None or isinstance(msg, InboundMessage)


@FUZZ
@given(st.binary(max_size=2000) | mutated(WECOM))
def test_wecom_xml(raw):
    wecom(raw)


@FUZZ
@given(st.dictionaries(st.sampled_from(["FromUserName", "MsgType", "Content", "MsgId", "CreateTime", "Event", "EventKey", "MediaId",
                                        "FileName", "TaskId", "CardType", "ResponseCode", "AgentID", "Latitude", "SelectedItems"]),
                       st.text(max_size=80) | st.none() | st.integers() | st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                                                            max_size=3)))
def test_wecom_fields(fields):
    with no_hang():
        try:
            msg = wecom_parse(fields, tenant="t1", corp="c1")
        except CallbackRejected:
            return
    assert msg is None or isinstance(msg, InboundMessage)


# DingTalk -------------------------------------------------------------------------------------------
JSONS = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=25)


def dingtalk(data) -> None:
    with no_hang():
        try:
            msg = dingtalk_parse(data, tenant="default", robot_code="dingappkey0001", corp_id="ding9f50b15bccd16741")
        except PayloadError:
            return
    assert msg is None or isinstance(msg, InboundMessage)


@FUZZ
@given(JSONS)
def test_dingtalk_random_json(data):
    dingtalk(data)


@FUZZ
@given(st.sampled_from(DINGTALK), st.dictionaries(st.sampled_from(sorted({k for d in DINGTALK for k in d})), JSONS, max_size=6))
def test_dingtalk_mutated_payloads(payload, changes):
    dingtalk({**payload, **changes})


@FUZZ
@given(mutated([json.dumps(d, ensure_ascii=False).encode() for d in DINGTALK]))
def test_dingtalk_mutated_bytes(raw):
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return  # the connector answers 400 before the parser sees it
    dingtalk(data)


# Feishu ---------------------------------------------------------------------------------------------------
def feishu(data) -> None:
    with no_hang():
        try:
            msg = feishu_parse(data, tenant="default", app_key="default", app_id="cli_9f5343c580712544", tenant_key="2ca1d211f64f6438",
                               bot_open_id="ou_b0t5343c580712544aa403a838cf73ee")
        except FeishuPayloadError:
            return
    assert msg is None or isinstance(msg, InboundMessage)


def _paths(obj, path: tuple = ()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))


FEISHU_PATHS = sorted({p for d in FEISHU for p in _paths(d)})


@FUZZ
@given(JSONS)
def test_feishu_random_json(data):
    feishu(data)


@FUZZ
@given(st.sampled_from(FEISHU), st.lists(st.tuples(st.sampled_from(FEISHU_PATHS), JSONS), max_size=4))
def test_feishu_events_with_fields_of_any_shape(payload, changes):
    """A recorded event with nested fields (header, sender ids, mentions, content, card values) replaced by anything."""
    data = json.loads(json.dumps(payload))
    for path, value in changes:
        cur = data
        for k in path[:-1]:
            cur = cur.get(k) if isinstance(cur, dict) else None
        if isinstance(cur, dict):
            cur[path[-1]] = value
    feishu(data)


# email --------------------------------------------------------------------------------------------------
def mail(raw: bytes) -> None:
    with no_hang():
        try:
            msg = parse_bytes(raw, MB, FILES)
        except UnparseableEmail:
            return
    assert isinstance(msg, InboundMessage) and msg.mail is not None


@FUZZ
@given(st.binary(max_size=3000))
def test_email_random_bytes(raw):
    mail(raw)


@FUZZ
@given(mutated(EMAIL))
def test_email_mutated_messages(raw):
    mail(raw)


@FUZZ
@given(st.lists(st.text(max_size=200) | st.sampled_from(["mx.seller.example.cn; dmarc=pass header.from=seller.example.cn",
                                                          "mx.seller.example.cn (a (nested) comment; x); dkim=pass header.d=\"seller.example.cn\"",
                                                          "mx.seller.example.cn; none", ";;;", "(((", "\"unclosed"]), max_size=5),
       st.text(max_size=60), st.text(max_size=30))
def test_sender_check_never_raises(headers, sender, authserv):
    with no_hang():
        got = check_sender(headers, sender, [authserv, "mx.seller.example.cn"])
    assert isinstance(got.verified, bool) and got.reason
