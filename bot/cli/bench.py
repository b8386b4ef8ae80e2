"""copilot bench gateway | retrieval | agent | ... (figures for the closing notes)."""
from __future__ import annotations

import asyncio
import json

import typer

from bot.cli.common import app

bench = typer.Typer(help="Benchmarks: ratios against a baseline measured in the same run.", no_args_is_help=True)
app.add_typer(bench, name="bench")


def _print(result: dict) -> None:
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


@bench.command("gateway")
def gateway(
    requests: int = typer.Option(3000, help="Requests per run."),
    concurrency: int = typer.Option(50, help="Concurrent clients."),
) -> None:
    """Console-channel ack latency and throughput vs. a bare aiohttp handler; exactly-once check."""
    from bot.bench.gateway import bench_console

    _print(asyncio.run(bench_console(requests, concurrency)))
