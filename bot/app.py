"""The one place where everything is wired: stores, index, agent, inbox, workers and connectors.

`Copilot.open(settings)` builds the system without HTTP (the CLI uses it as is); `start()` runs
the workers and connectors' background receivers; the gateway (bot.gateway) adds HTTP on top.
"""
from __future__ import annotations

import csv
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.agent import Agent
from bot.agent.answer import Answerer
from bot.agent.llm import ChatModel
from bot.audit import Audit
from bot.connector import Accepted, Connector
from bot.correspondence import Correspondence
from bot.directory import Directory
from bot.dispatch import Dispatcher
from bot.inbox import Inbox
from bot.metrics import Metrics
from bot.models import Attachment, InboundMessage, Target
from bot.outbox import Outbox
from bot.prompts import Prompts
from bot.ratelimit import RateLimiter
from bot.pending import PendingStore
from bot.publishing import Publishing
from bot.router import Router
from bot.scheduler import Scheduler, scheduler_for
from bot.settings import Settings, toml_section
from bot.storage import init_db, make_engine
from crm.scoring import ScoringConfig
from crm.service import CRM
from rag.embed import CachedEmbedder, make_embedder
from rag.index import VectorIndex
from rag.ingest import Ingestor, Uploader
from rag.retrieve import CrossEncoderReranker, Retriever

log = logging.getLogger("copilot")
SAMPLE_DATA_DIRS = ("crm", "eval")  # folders of knowledge/ that hold data, not documents


@dataclass
class Copilot:
    settings: Settings
    engine: Engine
    metrics: Metrics
    prompts: Prompts
    embedder: CachedEmbedder
    vectors: VectorIndex
    retriever: Retriever
    ingestor: Ingestor
    directory: Directory
    agent: Agent
    inbox: Inbox
    audit: Audit
    model: ChatModel
    connectors: dict[str, Connector]
    outbox: Outbox
    crm: CRM
    publishing: Publishing
    dispatcher: Dispatcher | None = None
    router: Router | None = None
    limiter: RateLimiter | None = None
    scheduler: Scheduler | None = None
    proactive: bool = True  # run the scheduler (digests, nudges, alerts, CRM sync); `copilot chat` turns it off
    started: bool = False

    @classmethod
    def open(cls, settings: Settings) -> "Copilot":
        settings.ensure_dirs()
        engine = make_engine(settings.db_url)
        init_db(engine)
        embedder = CachedEmbedder(make_embedder(settings.embed_model, api_key=settings.llm_api_key), settings.embed_cache_path, settings.embed_batch)
        vectors = VectorIndex(settings.chroma_dir, embedder.model_id, embedder.dim)
        reranker = CrossEncoderReranker(settings.rerank_model[3:] if settings.rerank_model.startswith("st:") else settings.rerank_model) if settings.rerank_model else None
        retriever = Retriever(engine, vectors, embedder, t2s=settings.traditional_to_simplified, reranker=reranker)
        prompts = Prompts(settings.prompts_dir)
        audit = Audit(engine, settings.tenant)
        model = ChatModel(settings, audit, audit.usage)
        answerer = Answerer(retriever, prompts, floor=settings.score_floor, floor_en=settings.score_floor_en,
                            stale_days=settings.stale_days, model=model)
        metrics = Metrics()
        inbox = Inbox(engine)
        connectors: dict[str, Connector] = {}
        outbox = Outbox(engine, connectors, metrics, retry_base=settings.retry_base_seconds, yield_to=lambda: inbox.quiet(0.05))
        directory = Directory(engine)
        ingestor = Ingestor(engine, vectors, embedder)
        crm = CRM(engine, tz=settings.timezone, scoring=ScoringConfig.from_dict(toml_section("scoring")))
        reach = lambda rep_id: directory.target_for(rep_id, connectors)  # noqa: E731
        publishing = Publishing(engine, ingestor, directory, outbox.enqueue, reach, settings.stale_days)
        agent = Agent(answerer=answerer, prompts=prompts, crm=crm, pending=PendingStore(engine), directory=directory, engine=engine,
                      enqueue=outbox.enqueue, can_email=lambda: "email" in connectors, publishing=publishing)
        return cls(
            settings=settings, engine=engine, metrics=metrics, prompts=prompts, embedder=embedder, vectors=vectors,
            retriever=retriever, ingestor=ingestor, directory=directory, agent=agent, inbox=inbox, audit=audit, model=model,
            connectors=connectors, outbox=outbox, crm=crm, publishing=publishing,
        )

    # first start ---------------------------------------------------------------------------------
    def needs_bootstrap(self) -> bool:
        return not self.directory.list() and self.vectors.count() == 0

    def bootstrap(self, progress=None) -> dict:  # noqa: ANN001
        """Load the bundled sample reps and CRM records, and ingest the bundled knowledge."""
        from crm.io import import_sample

        kdir = self.settings.knowledge_dir
        reps = import_reps(self.directory, kdir / "crm" / "reps.csv", self.settings.tenant)
        if (kdir / "crm").is_dir():
            import_sample(self.engine, kdir / "crm", self.settings.tenant, self.settings.timezone)
        results = self.ingestor.ingest_paths([kdir], Uploader("bootstrap", "admin", self.settings.tenant), progress=progress,
                                             exclude=SAMPLE_DATA_DIRS)
        return {"reps": reps, "documents": sum(r.status in ("added", "updated", "unchanged") for r in results),
                "errors": [r.to_json() for r in results if r.status == "error"]}

    # the pipeline ----------------------------------------------------------------------------------
    def attach(self, connectors: list[Connector]) -> None:
        for c in connectors:
            self.connectors[c.name] = c

    async def start(self) -> None:
        s = self.settings
        self.limiter = RateLimiter(s.rate_limit_per_minute)
        mail = Correspondence(self.directory, self.crm, self.agent.pending, self.outbox.enqueue, self.publishing.reach)
        self.router = Router(self.directory, self.agent, self.prompts, fetch=self.fetch, ingest_file=self.publishing.upload, mail=mail,
                             preview=self.preview)
        self.dispatcher = Dispatcher(self.inbox, self.router.handle, self.metrics, workers=s.workers, lease=s.lease_seconds,
                                     max_attempts=s.max_attempts, retry_base=s.retry_base_seconds, on_replies=self.outbox.wake)
        await self.outbox.start()
        await self.dispatcher.start()
        if self.proactive:
            self.scheduler = scheduler_for(self)
            await self.scheduler.start()
        for c in self.connectors.values():
            await c.start(self.sink)
        # Everything loaded so far (models, libraries) lives for the whole process: keep it out of the
        # collector's scans, or a full collection stalls every request in flight for ~70 ms.
        gc.collect()
        gc.freeze()
        self.started = True

    async def aclose(self) -> None:
        for c in self.connectors.values():
            try:
                await c.aclose()
            except Exception:  # noqa: BLE001
                log.exception("closing connector %s", c.name)
        if self.dispatcher:
            await self.dispatcher.aclose()
        if self.scheduler:
            await self.scheduler.aclose()
        await self.outbox.aclose()
        await self.inbox.aclose()
        self.embedder.close()
        self.engine.dispose()

    async def sink(self, msg: InboundMessage) -> Accepted:
        """Where every connector hands a message: durable first, then acknowledged, then processed."""
        started = time.perf_counter()
        acc = await self.inbox.put(msg)
        if acc.duplicate:
            self.metrics.deduplicated.labels(msg.channel).inc()
        else:
            self.metrics.received.labels(msg.channel).inc()
            if self.dispatcher is not None:
                self.dispatcher.notify(acc.inbox_id, msg.conversation_key)
        self.metrics.ack_latency.labels(msg.channel).observe(time.perf_counter() - started)
        return acc

    def preview(self, msg: InboundMessage):  # noqa: ANN201
        """A channel that can show an answer while the model writes it has `preview(target, text)`."""
        show = getattr(self.connectors.get(msg.channel), "preview", None)
        if show is None:
            return None
        target = Target.of(msg)
        return lambda text: show(target, text)

    async def fetch(self, msg: InboundMessage, att: Attachment) -> bytes:
        connector = self.connectors.get(msg.channel)
        if connector is None:
            raise RuntimeError(f"no connector for {msg.channel}")
        return await connector.fetch(msg.tenant, att)


def import_reps(directory: Directory, path: Path, tenant: str) -> int:
    """Sample reps from knowledge/crm/reps.csv, each reachable on the console channel under its id."""
    if not path.is_file():
        return 0
    n = 0
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            directory.add(row["id"], row.get("name") or row["id"], row.get("role") or "rep", team=row.get("team", ""),
                          tenant=tenant, channel="console", email=row.get("email", ""),
                          timezone=row.get("timezone") or "Asia/Shanghai", language=row.get("language") or "zh",
                          manager_id=row.get("manager_id", ""))
            if row.get("email"):
                directory.link(row["id"], "email", row["email"].lower(), tenant=tenant)
            n += 1
    return n
