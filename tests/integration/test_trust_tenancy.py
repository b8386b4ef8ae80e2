"""Issue 21, the CRM's scope and the tenants: a rep Cc'd on a colleague's customer mail gets nothing of
that account; a draft is scope-checked like every other CRM path; `reps add` never moves a person to
another tenant; Directory.get never returns another tenant's person; `wecom sync-users` matches ids exactly."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from connectors.message import Action, InboundMessage, MailFacts
from tests.conftest import EMBED_CACHE


def customer_mail(mid: str, cc: tuple[str, ...]) -> InboundMessage:
    mid = f"<{mid}@hdmg.example.com>"
    return InboundMessage(channel="email", conversation_id=mid, sender_id="wangjianguo@hdmg.example.com", sender_name="王建国",
                          text="张经理好，我们比较关注价格，能否再给一个三年期的报价？", platform_msg_id=mid,
                          received_at=datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc), from_outside=True,
                          mail=MailFacts(subject="Re: 报价方案", message_id=mid, to=("copilot@yunfan.example.com",), cc=cc),
                          reply_context={"mailbox": "default", "message_id": mid, "subject": "Re: 报价方案",
                                         "from": "wangjianguo@hdmg.example.com"})


async def test_a_rep_ccd_on_a_colleagues_customer_mail_gets_no_draft_from_that_account(make_app):
    copilot = make_app()
    copilot.directory.link("wangfang", "email", "wangfang@yunfan.example.com")  # 华南区: acc-001 is zhangwei's (华东区)
    from bot.agent.correspondence import Correspondence

    mail = Correspondence(copilot.directory, copilot.crm, copilot.agent.pending, copilot.outbox.enqueue, copilot.publishing.reach,
                          copilot.agent.prompts)
    await asyncio.to_thread(mail.receive, customer_mail("cc1", ("wangfang@yunfan.example.com",)))
    assert copilot.agent.pending.latest("console|default|web-wangfang", "wangfang") is None  # B is told nothing
    notice = copilot.agent.pending.latest("console|default|web-zhangwei", "zhangwei")  # the owner is
    assert notice is not None and notice.kind == "email_reply" and notice.payload["account_id"] == "acc-001"

    # Even holding a notice of that account (forged, or from before the fix), B gets no draft built from A's history.
    wangfang = copilot.directory.get("default", "wangfang")
    forged = copilot.agent.pending.create(tenant="default", rep_id="wangfang", conversation_key="console|default|web-wangfang",
                                          kind="email_reply", key="forged-1", payload={**notice.payload})
    [reply] = await asyncio.to_thread(copilot.agent.act, wangfang, Action(key="confirm", ref=forged.id))
    assert reply.kind == "notice" and reply.text == copilot.agent.prompts.msg("crm_account_not_found", "zh")
    assert copilot.agent.pending.latest("console|default|web-wangfang", "wangfang") is None  # no draft waits for B
    # The owner and their manager may.
    for rep in ("zhangwei", "lina"):
        reply, _ = await asyncio.to_thread(copilot.agent.drafter.propose, copilot.directory.get("default", rep), "acc-001", "",
                                           f"console|default|web-{rep}", datetime(2026, 11, 25, 9, tzinfo=timezone.utc), f"k-{rep}")
        assert reply.kind == "draft", rep


def test_directory_get_never_returns_another_tenants_person_and_add_never_moves_one(make_app):
    from bot.people.directory import DirectoryError

    copilot = make_app()
    assert copilot.directory.get("default", "lina").role == "manager"
    with pytest.raises(DirectoryError):
        copilot.directory.get("east", "lina")
    with pytest.raises(DirectoryError, match="already exists in tenant 'default'"):
        copilot.directory.add("lina", "Lina East", "rep", tenant="east")
    lina = copilot.directory.get("default", "lina")
    assert (lina.role, lina.tenant, lina.name) == ("manager", "default", "李娜")
    copilot.directory.add("lina", "李娜", "manager", team="华东区")  # the same tenant: an update, as before
    copilot.directory.add("lina-east", "Lina East", "rep", tenant="east")
    assert copilot.directory.get("east", "lina-east").tenant == "east"
    with pytest.raises(DirectoryError):
        copilot.directory.get("default", "lina-east")


def test_sync_users_links_ids_exactly(make_app):
    from bot.cli.wecom import link_members

    copilot = make_app()
    summary = link_members(copilot.directory, "default", [{"userid": "Admin", "name": "Mallory"}, {"userid": "zhangwei"}])
    assert copilot.directory.resolve("wecom", "default", "Admin").id != "admin"  # a new rep, not the sample admin
    assert copilot.directory.resolve("wecom", "default", "Admin").role == "rep"
    assert copilot.directory.resolve("wecom", "default", "zhangwei").id == "zhangwei"
    assert summary["created"] == 1 and summary["linked_by_id"] == 1


def test_reps_add_refuses_an_id_of_another_tenant(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")},
           "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE), "COPILOT_CONFIG": str(tmp_path / "absent.toml")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=300)

    assert run("reps", "add", "lina", "--name", "李娜", "--role", "manager", "--team", "华东区").returncode == 0
    r = run("reps", "add", "lina", "--name", "Lina", "--role", "rep", "--tenant", "east")
    assert r.returncode == 2 and "already exists in tenant 'default'" in r.stderr and "Traceback" not in r.stderr
    r = run("reps", "list", "--json")
    import json

    [lina] = [p for p in json.loads(r.stdout) if p["id"] == "lina"]
    assert (lina["role"], lina["tenant"]) == ("manager", "default")
