"""A local server that speaks the OpenAI chat-completions protocol, driven by a script.

Each request pops the next scripted step: a text answer, tool calls, a delay, an HTTP error or a
malformed body. With an empty script it answers by a rule (`default`); `policy` is a deterministic
stand-in for a competent model (routes by keywords, answers from the best-matching passage with its
citation, fills JSON for extraction and drafts), used by `python -m bench agent` and the tests.
Every request is kept (what left the building: masked PII, prompts, tools).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web


@dataclass
class Step:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name": .., "arguments": {..}}]
    delay: float = 0.0
    status: int = 200
    raw: str | None = None  # a body sent as is (malformed JSON)
    chunk_delay: float = 0.0  # when the client streams: the pause between pieces of the text


class FakeOpenAI:
    def __init__(self, default: Callable[[dict], Step] | None = None, model: str = "qwen2.5-7b-instruct") -> None:
        self.script: list[Step] = []
        self.requests: list[dict] = []
        self.auth: list[str] = []  # the Authorization header of every request (chat and embeddings)
        self.embedded: list[str] = []  # every text sent to /v1/embeddings
        self.streamed: list[int] = []  # per streamed answer: the pieces written before it ended (or the client left)
        self.default = default or (lambda body: Step(text="NOT_IN_KB"))
        self.model = model
        self.arrived = asyncio.Event()

    def add(self, *steps: Step) -> None:
        self.script.extend(steps)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat), web.get("/v1/models", self._models),
                        web.post("/v1/embeddings", self._embeddings)])
        return app

    async def _embeddings(self, request: web.Request) -> web.Response:
        """A deterministic 8-dimension embedding per text (its character codes folded), as OpenAI returns it."""
        body = await request.json()
        self.auth.append(request.headers.get("Authorization", ""))
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else texts
        self.embedded.extend(texts)
        data = []
        for i, text in enumerate(texts):
            vec = [0.0] * 8
            for j, ch in enumerate(text):
                vec[j % 8] += (ord(ch) % 97) / 97
            data.append({"object": "embedding", "index": i, "embedding": [v + 0.01 for v in vec]})
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.auth.append(request.headers.get("Authorization", ""))
        self.requests.append(body)
        self.arrived.set()
        step = self.script.pop(0) if self.script else self.default(body)
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.raw is not None:
            return web.Response(text=step.raw, status=step.status, content_type="application/json")
        if step.status != 200:
            return web.json_response({"error": {"message": "scripted failure", "type": "server_error"}}, status=step.status)
        if body.get("stream") and not step.tool_calls:
            return await self._stream(request, body, step)
        message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
        if step.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for i, c in enumerate(step.tool_calls)
            ]
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 2
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if step.tool_calls else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(step.text) // 2 + 1,
                      "total_tokens": prompt_tokens + len(step.text) // 2 + 1},
        })


    async def _stream(self, request: web.Request, body: dict, step: Step) -> web.StreamResponse:
        """Server-sent events as the OpenAI API streams them: content deltas, then usage, then [DONE]."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk", "created": int(time.time()), "model": body.get("model")}
        pieces = [step.text[i : i + 4] for i in range(0, len(step.text), 4)] or [""]
        self.streamed.append(0)
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            try:
                await resp.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]}, ensure_ascii=False)}\n\n".encode())
            except ConnectionResetError:  # the client stopped reading and closed the stream
                return resp
            self.streamed[-1] = i + 1
            if step.chunk_delay:
                await asyncio.sleep(step.chunk_delay)
        await resp.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 100, "completion_tokens": len(step.text) // 2 + 1, "total_tokens": 100 + len(step.text) // 2 + 1}
            await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def system_text(body: dict) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system")


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\s+", "", text.lower())
    return {text[i : i + 2] for i in range(len(text) - 1)}


ROUTES = [
    ("my_day", r"待办|今天.{0,6}(安排|任务|要做)|my day|on my plate|today"),
    ("draft_followup", r"起草|(帮我|给).{0,12}写|写(一|个|封)|draft|write"),
    ("log_store_visit", r"巡店|store visit"),
    ("log_activity", r"拜访了|打了电话|见了|开了会|visited|called|met "),
    ("compare_competitor", r"比|对比|compare|versus|\bvs\b"),
]


def policy(body: dict) -> Step:
    """What a careful model would answer to each of the copilot's prompts."""
    system, user = system_text(body), user_text(body)
    if system.startswith("You route"):
        for name, rx in ROUTES:
            if re.search(rx, user, re.I):
                return Step(tool_calls=[{"name": name, "arguments": {"notes": user, "question": user, "account": user, "competitor": user}}])
        return Step(tool_calls=[{"name": "answer_question", "arguments": {"question": user}}])
    if "numbered passages" in system:
        question = user.split("Question:", 1)[1].split("\n", 1)[0].strip()
        passages = re.findall(r"^\[(\d+)\] ([^\n]*)\n(.*?)(?=^\[\d+\] |\Z)", user.split("Passages:", 1)[1], re.S | re.M)
        q = _bigrams(question)
        best = max(passages, key=lambda p: len(q & _bigrams(p[1] + p[2])), default=None)
        if best is None or len(q & _bigrams(best[1] + best[2])) < 2:
            return Step(text="NOT_IN_KB")
        first = re.split(r"(?<=[。！？.!?])\s*", best[2].strip())[0].lstrip("-* ").strip()
        return Step(text=f"{first} [{best[0]}]")
    if "CRM fields" in system:
        note = user.split("Note:", 1)[1].split("\n", 1)[0].strip()
        return Step(text=json.dumps({"summary": note, "task_title": "", "due": ""}, ensure_ascii=False))
    if "revise a follow-up" in system:
        body_text = user.split("Body:", 1)[1].split("Change requested:", 1)[0].strip()
        return Step(text=json.dumps({"subject": "", "body": body_text + "\n(revised)"}, ensure_ascii=False))
    if "write a follow-up" in system:
        facts = json.loads(user.split("CRM facts:", 1)[1].split("Template:", 1)[0])
        zh = facts.get("lang") != "en"
        name = facts.get("contact") or ("您" if zh else "there")
        body_text = (f"{name}您好：\n感谢交流，关于{facts.get('topic')}我们会尽快给出方案。\n祝好" if zh
                     else f"Dear {name},\nThank you for your time. We will follow up on {facts.get('topic')} shortly.\nBest regards")
        return Step(text=json.dumps({"subject": f"跟进：{facts.get('topic')}" if zh else f"Follow-up: {facts.get('topic')}", "body": body_text}, ensure_ascii=False))
    return Step(text="NOT_IN_KB")


def user_text(body: dict) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")


