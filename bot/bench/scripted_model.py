"""A local server that speaks the OpenAI chat-completions protocol, driven by a script.

Each request pops the next scripted step: a text answer, tool calls, a delay, an HTTP error or a
malformed body. With an empty script it answers by a rule (`default`). Every request is kept for
assertions (what left the building: masked PII, prompts, tools).
"""
from __future__ import annotations

import asyncio
import json
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


class FakeOpenAI:
    def __init__(self, default: Callable[[dict], Step] | None = None, model: str = "qwen2.5-7b-instruct") -> None:
        self.script: list[Step] = []
        self.requests: list[dict] = []
        self.default = default or (lambda body: Step(text="NOT_IN_KB"))
        self.model = model
        self.arrived = asyncio.Event()

    def add(self, *steps: Step) -> None:
        self.script.extend(steps)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat), web.get("/v1/models", self._models)])
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.arrived.set()
        step = self.script.pop(0) if self.script else self.default(body)
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.raw is not None:
            return web.Response(text=step.raw, status=step.status, content_type="application/json")
        if step.status != 200:
            return web.json_response({"error": {"message": "scripted failure", "type": "server_error"}}, status=step.status)
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


def user_text(body: dict) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")


def serve_forever(port: int, default: Callable[[dict], Step] | None = None) -> None:  # for subprocess use
    web.run_app(FakeOpenAI(default).app(), host="127.0.0.1", port=port, print=None)
