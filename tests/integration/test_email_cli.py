"""`copilot email parse`, mailbox settings and wiring, and the reply composer (no servers needed)."""
from __future__ import annotations

import json

import pytest

from bot.cli import main
from connectors.email.config import Mailbox, load_mailboxes
from connectors.email.render import render, reply_subject
from connectors.message import Reply, Target
from tests.fakes.email_env import CNMAIL, FIXTURES


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


def test_parse_shows_what_the_copilot_sees(capsys):
    code, out, err = run(capsys, "email", "parse", str(FIXTURES / "out_of_office_zh.eml"))
    assert code == 0 and err == ""
    assert "from:        张伟 <zhangwei@customer.example.cn>" in out
    assert "message-id:  <oof-20240304@customer.example.cn>" in out
    assert "thread:      <quote-77@seller.example.cn>" in out
    assert "no reply:    Auto-Submitted: auto-generated" in out
    assert "我正在休假" in out


def test_parse_several_files_gives_one_json_line_each(capsys):
    files = sorted(FIXTURES.glob("*.eml")) + sorted(CNMAIL.glob("*.eml"))[:3]
    code, out, err = run(capsys, "email", "parse", *map(str, files))
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    for r in rows:
        assert {"from", "to", "cc", "subject", "date", "message_id", "thread_id", "text", "attachments"} <= set(r)


def test_parse_refuses_missing_files_and_non_mail_with_one_line_and_exit_2(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("just some notes\nno headers here\n")
    (tmp_path / "empty.eml").write_bytes(b"")
    for bad, reason in ((tmp_path / "absent.eml", "no such file"), (tmp_path / "notes.txt", "not an email"),
                        (tmp_path / "empty.eml", "not an email"), (tmp_path, "is a folder")):
        code, out, err = run(capsys, "email", "parse", str(bad))
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and reason in err and "Traceback" not in err
    code, out, err = run(capsys, "email", "parse", str(FIXTURES / "qq_reply_damaged.eml"), str(tmp_path / "absent.eml"), "--json")
    assert code == 2 and "Traceback" not in err
    good, bad = (json.loads(line) for line in out.splitlines())
    assert good["message_id"] and bad == {"file": str(tmp_path / "absent.eml"), "error": "no such file"}
    code, out, err = run(capsys, "email", "parse")
    assert code == 2 and "Missing argument" in err and "Traceback" not in err


def test_mailboxes_from_toml_and_the_environment(make_settings, monkeypatch):
    settings = make_settings(tenant="acme")
    monkeypatch.setenv("COPILOT_EMAIL_IMAP_HOST", "imap.exmail.qq.com")
    monkeypatch.setenv("COPILOT_EMAIL_USERNAME", "copilot@acme.cn")
    monkeypatch.setenv("COPILOT_EMAIL_PASSWORD", "app-password")
    monkeypatch.setenv("COPILOT_EMAIL_SMTP_HOST", "smtp.exmail.qq.com")
    monkeypatch.setenv("COPILOT_EMAIL_SMTP_SECURITY", "ssl")
    section = {"mailboxes": [{"key": "east", "imap_host": "imap.163.com", "imap_ssl": False, "imap_starttls": True,
                              "username": "east@acme.cn", "password": "x", "tenant": "east", "idle": False}]}
    (default, east), problems = load_mailboxes(settings.tenant, section)
    assert problems == []
    assert (east.key, east.imap_security, east.imap_port_, east.tenant, east.idle) == ("east", "starttls", 143, "east", False)
    assert (default.key, default.imap_port_, default.smtp_port_, default.tenant) == ("default", 993, 465, "acme")
    assert default.own_address == "copilot@acme.cn" and default.smtp_user == "copilot@acme.cn"
    # a bad setting is reported (the setting and the fix), and the mailbox left out: the environment's is replaced by it
    mailboxes, [bad] = load_mailboxes(settings.tenant, {"mailboxes": [{"imap_host": "h", "username": "u", "smtp_security": "tls"}]})
    assert mailboxes == [] and bad.setting == "[[email.mailboxes]] key='default': smtp_security" and "'starttls'" in bad.fix
    mailboxes, [bad] = load_mailboxes(settings.tenant, {"mailboxes": [{"key": "east", "imap_host": "h"}]})
    assert [m.key for m in mailboxes] == ["default"] and bad.setting.endswith(": username") and bad.detail == "is missing"


def test_wiring_adds_the_email_channel_only_when_a_mailbox_is_configured(make_settings, monkeypatch):
    from bot.app import channel_connectors, open_database

    settings = make_settings()
    assert "email" not in [c.name for c in channel_connectors(settings)]
    monkeypatch.setenv("COPILOT_EMAIL_IMAP_HOST", "127.0.0.1")
    monkeypatch.setenv("COPILOT_EMAIL_USERNAME", "copilot@acme.cn")
    [email] = [c for c in channel_connectors(settings, open_database(settings)) if c.name == "email"]
    assert list(email.mailboxes) == ["default"]


@pytest.mark.parametrize("subject, expected", [
    ("报价", "Re: 报价"), ("Re: 报价", "Re: 报价"), ("RE: Re: re:报价", "Re: 报价"), ("回复：答复: 报价", "Re: 报价"),
    ("Re[2]: AW: Quote", "Re: Quote"), ("Fwd: 报价", "Re: Fwd: 报价"), ("", "Re:"),
])
def test_reply_subject_never_piles_up(subject, expected):
    assert reply_subject(subject) == expected


def test_compose_threads_and_marks_automatic_mail():
    mb = Mailbox(imap_host="h", username="copilot@acme.cn", smtp_host="s", from_name="Acme Copilot")
    ctx = {"mailbox": "default", "message_id": "<p@c.cn>", "references": ["<r@a.cn>", "<q@a.cn>"], "subject": "RE: 报价",
           "from": "wang@c.cn", "reply_to": ["buyer@c.cn"], "no_reply": ""}
    target = Target(channel="email", conversation_id="<r@a.cn>", user_id="wang@c.cn", context=ctx)
    out = render(target, Reply(text="您好 https://kb.example/doc?a=1&b=2"), "k1", mb)
    m = out.message
    assert m["To"] == "wang@c.cn"  # the verified sender's own address, never the Reply-To (issue 21)
    assert m["Subject"] == "Re: 报价" and m["In-Reply-To"] == "<p@c.cn>"
    assert m["References"] == "<r@a.cn> <q@a.cn> <p@c.cn>" and m["Auto-Submitted"] == "auto-replied"
    assert out.recipients == ["wang@c.cn", "copilot@acme.cn"] and out.thread == "<r@a.cn>"
    assert '<a href="https://kb.example/doc?a=1&amp;b=2">' in m.get_body(("html",)).get_content()
    again = render(target, Reply(text="改过的", kind="draft", meta={"email": {
        "to": ["王总 <wang@c.cn>"], "cc": [["Li", "li@acme.cn"]], "subject": "Re: Re: 报价", "from_name": "张伟"}}), "k1", mb)
    assert again.message_id == out.message_id  # the same key, the same Message-ID
    assert again.message["Subject"] == "Re: 报价" and "Auto-Submitted" not in again.message
    assert again.recipients == ["wang@c.cn", "li@acme.cn", "copilot@acme.cn"]


@pytest.mark.parametrize("name, wire", [("INBOX", "INBOX"), ("已发送", "&XfJT0ZAB-"), ("Sent & Drafts", "Sent &- Drafts"),
                                        ("寄件備份", "&W8RO9lCZTv0-")])
def test_folder_names_go_out_in_modified_utf7(name, wire):
    from connectors.email.imap import utf7

    assert utf7(name) == wire
