"""Servers the gateway benchmark loads: `bare` (an aiohttp handler that parses JSON and answers 202)
and `copilot` (the real gateway with its durable inbox and workers, console channel)."""
from __future__ import annotations

import argparse
import json

from aiohttp import web

BENCH_USER, BENCH_PASSWORD = "bench", "bench-password-1"  # the copilot target's web chat user (the load signs in once)


def bare_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"inbox_id": 0, "duplicate": False, "echo": len(json.dumps(body))}, status=202)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.post("/api/chat", handle), web.get("/healthz", health)])
    return app


def copilot_app(extra: str = ""):
    from bot.app import build_app
    from bot.ops.logs import configure
    from bot.settings import Settings
    from bot.web.gateway import create_web_app

    s = Settings()
    configure("WARNING")
    cp = build_app(s, platforms=True)
    cp.auth.add_user(BENCH_USER, "rep", s.tenant, BENCH_PASSWORD)
    return create_web_app(cp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["bare", "copilot"])
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    app = bare_app() if a.kind == "bare" else copilot_app()
    web.run_app(app, host="127.0.0.1", port=a.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
