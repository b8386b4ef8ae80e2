"""/draft sends the template's message, not its instructions, with its numbering; a manager's /todo is the team's."""
from __future__ import annotations

import re

from tests.integration.test_agent_offline import Chat


def test_draft_leaves_template_instructions_out_and_keeps_numbering(copilot):
    [zh] = Chat(copilot, "zhangwei", "tpl-zh").say("/draft 华东医疗集团")
    [en] = Chat(copilot, "tom", "tpl-en").say("/draft Bright Dental Asia")
    for reply, leaks in ((zh, ("适用：", "正文：", "{")), (en, ("Send on the", "Send within", "Body:", "{"))):
        assert reply.kind == "draft"
        for leak in leaks:
            assert leak not in reply.text, (leak, reply.text)
        numbered = re.findall(r"^(\d)\. ", reply.text, re.M)
        assert numbered[:2] == ["1", "2"], reply.text  # the template's list, numbered as written
    assert "王建国" in zh.text and "Emily" in en.text


def test_a_managers_day_includes_the_team(copilot):
    [rep] = Chat(copilot, "zhangwei", "day-rep").say("/todo")
    [manager] = Chat(copilot, "lina", "day-mgr").say("/todo")
    assert manager.kind == "answer" and "没有到期" not in manager.text
    for line in (ln for ln in rep.text.splitlines() if ln.startswith("• ")):
        assert line + "（张伟）" in manager.text  # every item of the rep's, named as his
    assert "李军" in manager.text  # and the other rep of the team
    [other] = Chat(copilot, "tom", "day-other").say("/todo")
    assert "张伟" not in other.text  # a rep sees only their own
