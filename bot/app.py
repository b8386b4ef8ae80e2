"""The app factory: every part built once, here, and handed only what it uses.

`open_knowledge(settings)` opens the knowledge base alone (what `copilot ingest`/`search`/`kb` need);
`build_app(settings, ...)` builds the whole copilot on top of it: people, CRM, agent, the pipeline
(intake → inbox → dispatcher → router → outbox) and the channels. Nothing is patched after
construction and nothing is global; the web gateway (bot.web.gateway) only mounts routes.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from bot.settings import Settings, toml_section
from bot.storage import init_db, make_engine
from connectors.channel import ChannelContext, Connector
from rag.embed import CachedEmbedder, make_embedder
from rag.index import VectorIndex
from rag.ingest import Ingestor
from rag.retrieve import CrossEncoderReranker, Retriever

if TYPE_CHECKING:
    from bot.agent import Agent
    from bot.agent.publishing import Publishing
    from bot.auth.service import Auth
    from bot.ops.audit import Audit
    from bot.ops.metrics import Metrics
    from bot.ops.shared import SharedRedis
    from bot.people.directory import Directory
    from bot.pipeline.channels import Channels
    from bot.pipeline.dispatch import Dispatcher
    from bot.pipeline.inbox import Inbox
    from bot.pipeline.intake import Intake
    from bot.pipeline.outbox import Outbox
    from bot.pipeline.ratelimit import LimiterFactory
    from bot.pipeline.wakeup import PgWakeup
    from bot.proactive.scheduler import Scheduler
    from bot.web.links import LinkSigner
    from crm.service import CRM

log = logging.getLogger("copilot")


@dataclass(frozen=True)
class Knowledge:
    """The knowledge base: embedder, vector index, retriever and ingestor over one database."""

    engine: Engine
    embedder: CachedEmbedder
    vectors: VectorIndex
    retriever: Retriever
    ingestor: Ingestor

    def close(self) -> None:
        self.ingestor.close()  # the file-parsing worker processes
        self.embedder.close()


def open_database(settings: Settings) -> Engine:
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    init_db(engine)
    return engine


def data_dirs(settings: Settings) -> list[str]:
    """What ingestion never takes as documents: the data folder names/paths of the settings and our own data directory."""
    return [*settings.knowledge_data_dirs, str(settings.data_dir)]


def model_embedder(settings: Settings):
    """The configured embedder; an `openai:` endpoint gets its own key and the egress guard (bot.agent.egress)."""
    from bot.agent.egress import guarded_client

    spec = settings.embed_model.strip()
    client = guarded_client(settings) if spec.startswith("openai:") else None
    return make_embedder(spec, api_key=settings.embed_api_key.get_secret_value(), http_client=client)


def open_knowledge(settings: Settings, engine: Engine | None = None) -> Knowledge:
    engine = engine or open_database(settings)
    embedder = CachedEmbedder(model_embedder(settings), settings.embed_cache_path, settings.embed_batch)
    vectors = VectorIndex(settings.chroma_dir, embedder.model_id, embedder.dim, url=settings.chroma_url)
    rerank = settings.rerank_model
    reranker = CrossEncoderReranker(rerank[3:] if rerank.startswith("st:") else rerank) if rerank else None
    retriever = Retriever(engine, vectors, embedder, t2s=settings.traditional_to_simplified, reranker=reranker)
    return Knowledge(engine, embedder, vectors, retriever, Ingestor(engine, vectors, embedder, data_dirs=data_dirs(settings)))


def write_sample_embeddings(settings: Settings) -> Path:
    """Embed the sample knowledge from scratch under `settings.embed_model` and write the vectors to
    knowledge/.sample-embeddings.db, which a first start copies into its cache (`make sample-embeddings`)."""
    import tempfile

    from bot.people.directory import Directory
    from bot.samples import SAMPLE_EMBEDDINGS, load_samples

    out = settings.knowledge_dir / SAMPLE_EMBEDDINGS
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp), "embed_cache": None, "database_url": SecretStr("")})
        engine = open_database(s)
        knowledge = open_knowledge(s, engine)
        try:
            load_samples(s.knowledge_dir, s.tenant, s.timezone, engine=engine, directory=Directory(engine),
                         ingestor=knowledge.ingestor, seed=False)
            out.unlink(missing_ok=True)
            knowledge.embedder.export(out)
        finally:
            knowledge.close()
            engine.dispose()
    return out


def channel_context(settings: Settings, name: str, engine: Engine | None = None,
                    labels: Mapping[str, Mapping[str, str]] | None = None, shared: SharedRedis | None = None) -> ChannelContext:
    """What the connector called `name` receives: its own [name] section, the shared resources and the words it
    adds around a reply (`labels`: the catalogue's channel_* messages, read from the catalogue when not given);
    with Redis (`shared`), the token cache and replay memory every process shares."""
    if labels is None:
        from bot.prompts import Prompts

        labels = Prompts(settings.prompts_dir).labels("channel_")
    return ChannelContext(section=toml_section(name), tenant=settings.tenant, public_url=settings.base_url,
                          data_dir=settings.data_dir, max_download=settings.max_upload_bytes, engine=engine, labels=labels,
                          tokens=shared.tokens() if shared else None, claims=shared.claims() if shared else None)


def channel_connectors(settings: Settings, engine: Engine | None = None,
                       labels: Mapping[str, Mapping[str, str]] | None = None, shared: SharedRedis | None = None) -> list[Connector]:
    """The platform channels this deployment configures (the console channel is always added by build_app)."""
    from connectors import dingtalk, email, feishu, wecom

    built = [module.build(channel_context(settings, name, engine, labels, shared)) for name, module in
             (("dingtalk", dingtalk), ("wecom", wecom), ("feishu", feishu), ("email", email))]
    return [c for c in built if c is not None]


@dataclass(frozen=True)
class App:
    """The built copilot. Its parts know nothing of it: each got what it uses at construction."""

    settings: Settings
    engine: Engine
    knowledge: Knowledge
    metrics: Metrics
    audit: Audit
    directory: Directory
    crm: CRM
    agent: Agent
    publishing: Publishing
    links: LinkSigner
    auth: Auth
    channels: Channels
    inbox: Inbox
    outbox: Outbox
    intake: Intake
    dispatcher: Dispatcher
    scheduler: Scheduler | None
    wakeup: PgWakeup | None = None  # processes on one PostgreSQL tell each other of new and finished messages
    limiters: LimiterFactory | None = None  # how the web edge makes its rate limiters (shared through Redis when there is one)
    shared: SharedRedis | None = None  # Redis (COPILOT_REDIS_URL), when configured: tokens, rate limits, replay memory

    async def start(self) -> None:
        await self.outbox.start()
        if self.wakeup is not None:
            await self.wakeup.start()
        await self.dispatcher.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        await self.channels.start(self.intake.sink)
        # Everything loaded so far (models, libraries) lives for the whole process: keep it out of the
        # collector's scans, or a full collection stalls every request in flight for ~70 ms.
        gc.collect()
        gc.freeze()

    @property
    def started(self) -> bool:
        return self.dispatcher.running

    async def drain(self, grace: float) -> int:
        """A graceful stop's first half: start no new message, let the ones being handled finish and deliver
        their replies, all within `grace` s. Returns how many messages are still unfinished: they stay in the
        durable inbox and resume at the next start. Call `aclose` after it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        await self.dispatcher.drain(grace)
        await self.outbox.drain(max(0.0, end - loop.time()))
        return self.dispatcher.in_flight()

    async def aclose(self) -> None:
        await self.channels.aclose()
        await self.dispatcher.aclose()
        if self.wakeup is not None:
            await self.wakeup.aclose()
        if self.scheduler is not None:
            await self.scheduler.aclose()
        await self.outbox.aclose()
        await self.inbox.aclose()
        if self.shared is not None:
            await self.shared.aclose()

    def needs_samples(self) -> bool:
        from bot.samples import needs_samples

        return needs_samples(self.directory, self.knowledge.vectors)

    def load_samples(self, progress=None) -> dict:
        from bot.samples import load_samples

        s = self.settings
        return load_samples(s.knowledge_dir, s.tenant, s.timezone, engine=self.engine, directory=self.directory,
                            ingestor=self.knowledge.ingestor, progress=progress)

    def close(self) -> None:
        """Release the stores: the owner of the app calls it once, after `aclose` if it was started."""
        self.knowledge.close()
        self.engine.dispose()


def build_app(settings: Settings, *, platforms: bool = False, channels: Iterable[Connector] = (), proactive: bool = True,
              deliver_only: set[str] | None = None) -> App:
    """The whole copilot. `platforms`: run the platform channels the settings configure (WeCom, DingTalk,
    email); `channels`: more connectors (a terminal, a test's); the console channel (web chat) is always there. `proactive=False` runs no scheduler (digests, nudges, CRM sync);
    `deliver_only`: the conversation keys this process delivers (`copilot chat` beside a server)."""
    from bot.agent import Agent
    from bot.agent.answer import Answerer
    from bot.agent.correspondence import Correspondence
    from bot.agent.delivery import Delivery
    from bot.agent.llm import ChatModel
    from bot.agent.pending import PendingStore
    from bot.agent.publishing import Publishing
    from bot.auth.service import Auth
    from bot.ops.audit import Audit
    from bot.ops.metrics import Metrics
    from bot.ops.shared import SharedRedis
    from bot.people.directory import Directory
    from bot.pipeline.channels import Channels
    from bot.pipeline.dispatch import Dispatcher
    from bot.pipeline.history import chat_timeline
    from bot.pipeline.inbox import OWNER, Inbox
    from bot.pipeline.intake import Intake
    from bot.pipeline.outbox import Outbox, reply_history
    from bot.pipeline.ratelimit import limiters
    from bot.pipeline.router import Router
    from bot.pipeline.wakeup import PgWakeup
    from bot.proactive.scheduler import build_scheduler
    from bot.prompts import Prompts
    from bot.web.links import KeyRing, LinkSigner, load_secret
    from bot.web.session import PERSON
    from connectors import local as web_chat
    from crm.scoring import ScoringConfig
    from crm.service import CRM

    s = settings
    engine = open_database(s)
    knowledge = open_knowledge(s, engine)
    metrics = Metrics()
    redis_url = s.redis_url.get_secret_value()
    shared = SharedRedis(redis_url, on_fallback=lambda use: metrics.redis_fallbacks.labels(use).inc()) if redis_url else None
    limiter = limiters(shared)
    prompts = Prompts(s.prompts_dir)
    audit = Audit(engine, s.tenant)
    directory = Directory(engine)
    crm = CRM(engine, tz=s.timezone, scoring=ScoringConfig.from_dict(toml_section("scoring")))
    wakeup = PgWakeup.for_engine(engine, OWNER, lambda kind, items: dispatcher.wake(kind, items))
    inbox = Inbox(engine, signal=wakeup.say if wakeup else None)
    secret = load_secret(s.data_dir)
    auth = Auth(engine, directory, secret, idle=s.session_idle_hours * 3600, absolute=s.session_max_days * 86400,
                link_ttl=s.signin_link_minutes * 60)
    # the web chat's sender is the person the gateway's session middleware put on the request, never a field
    signed_in = lambda request: (p.id, p.name) if (p := request.get(PERSON)) is not None else None
    labels = prompts.labels("channel_")  # read once: every connector and the text fallback use the same words
    local = web_chat.build(channel_context(s, "console", engine, labels), history=reply_history(engine, "console"), identity=signed_in,
                           web_chat=s.web_chat, timeline=chat_timeline(engine, "console"), words=prompts.labels("chat_"))
    chans = Channels([local, *(channel_connectors(s, engine, labels, shared) if platforms else ()), *channels], labels=labels)
    pending = PendingStore(engine)
    reach = lambda rep_id: directory.target_for(rep_id, chans.names())
    # after the platform answered: a draft is "sent ✓" and logged only once delivered, a dead letter is told to the
    # rep, a confirmation a crash left executing returns to pending (its enqueue is the outbox's, built next)
    def who(target):  # a reply's target -> the directory person it was for (their id and language)
        p = directory.resolve(target.channel, target.tenant, target.user_id) if target.user_id else None
        return (p.id, p.language) if p is not None else None

    delivery = Delivery(pending, crm, prompts, lambda *a: outbox.enqueue(*a), reach, stale_after=s.confirm_stale_seconds, who=who)
    outbox = Outbox(engine, chans, metrics, retry_base=s.retry_base_seconds, yield_to=lambda: inbox.quiet(0.05), only=deliver_only,
                    on_sent=delivery.after_sent, on_dead=delivery.after_dead)

    links = LinkSigner(KeyRing(s.data_dir / "link-keys"), s.base_url, ttl=s.citation_link_hours * 3600)
    model = ChatModel(s, audit, audit.usage)
    answerer = Answerer(knowledge.retriever, prompts, floor=s.score_floor, floor_en=s.score_floor_en, stale_days=s.stale_days,
                        model=model, link=lambda h, v: links.url(h.doc_id, v.tenant, v.role, v.team, h.chunk_id, v.user_id))
    publishing = Publishing(engine, knowledge.ingestor, directory, outbox.enqueue, reach, prompts, stale_days=s.stale_days)
    agent = Agent(answerer=answerer, prompts=prompts, crm=crm, pending=pending, directory=directory, engine=engine,
                  enqueue=outbox.enqueue, can_email=lambda: "email" in chans, publishing=publishing)
    mail = Correspondence(directory, crm, agent.pending, outbox.enqueue, reach, prompts)
    router = Router(directory, agent, prompts, fetch=chans.fetch, ingest_file=publishing.upload, mail=mail, preview=chans.preview)
    dispatcher = Dispatcher(inbox, router.handle, metrics, apology=prompts.both("apology"), workers=s.workers, lease=s.lease_seconds,
                            max_attempts=s.max_attempts, retry_base=s.retry_base_seconds, on_replies=outbox.wake,
                            handler_timeout=s.handler_timeout, housekeeping=delivery.sweep, told=wakeup is not None)
    intake = Intake(inbox, limiter("intake", s.rate_limit_per_minute), metrics, dispatcher.notify)
    scheduler = build_scheduler(s, engine, outbox, directory, knowledge.retriever, publishing, prompts) if proactive else None
    return App(settings=s, engine=engine, knowledge=knowledge, metrics=metrics, audit=audit, directory=directory, crm=crm,
               agent=agent, publishing=publishing, links=links, auth=auth, channels=chans, inbox=inbox, outbox=outbox, intake=intake,
               dispatcher=dispatcher, scheduler=scheduler, wakeup=wakeup, limiters=limiter, shared=shared)
