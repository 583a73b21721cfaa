"""Everything a process needs to serve and execute runs, built once from ``Settings``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.auth.rate_limit import RateLimiter, create_rate_limiter
from app.auth.service import UsageMarks
from app.auth.tokens import TokenService
from app.billing.stripe_service import StripeService
from app.billing.usage_reporter import UsageReporter
from app.config import Settings
from app.db import Database
from app.dispatch.base import Dispatcher
from app.dispatch.change_relay import RelayedNotifier
from app.dispatch.leases import LeaseRenewer
from app.dispatch.notifier import RunNotifier
from app.dispatch.pool import InProcessDispatcher
from app.dispatch.redis_queue import RedisDispatcher
from app.dispatch.relay import Housekeeper
from app.dispatch.worker import QueueConsumer
from app.events.slots import StreamSlots, create_stream_slots
from app.fmi.archive import ArchiveLimits
from app.fmus.cache import FmuCache
from app.idempotency.store import IdempotencyStore
from app.runs.executor import FmuRunner, default_limits
from app.sandbox import create_backend
from app.sandbox.backends import NoSandboxes
from app.sandbox.pool import SandboxPool
from app.sandbox.warm import Reuse
from app.storage import Storage, create_storage
from app.storage.space import FreeSpace

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: Storage
    cache: FmuCache
    archive_limits: ArchiveLimits
    notifier: RunNotifier
    runner: FmuRunner
    dispatcher: Dispatcher
    rate_limiter: RateLimiter | None
    idempotency: IdempotencyStore
    # Signs and verifies access tokens; built here so every request shares one.
    tokens: TokenService = field(init=False)
    # Whether blob storage has room for an upload, a run or a sweep (app.storage_admission).
    free_space: FreeSpace = field(init=False)
    usage_marks: UsageMarks = field(init=False, default_factory=UsageMarks)
    # Counts each user's open event streams (in Redis when configured, shared by every API process).
    stream_slots: StreamSlots = field(init=False)
    stripe: StripeService = field(init=False)
    # Reports the usage outbox to Stripe; None when Stripe is not configured.
    usage_reporter: UsageReporter | None = field(init=False)
    # Renews the leases of the runs this process executes (and carries cancels to them).
    lease_renewer: LeaseRenewer = field(init=False)
    # Relays the dispatch outbox and reaps lapsed leases.
    housekeeper: Housekeeper = field(init=False)
    # Consumes the Redis queue when this process executes runs with a broker configured.
    consumer: QueueConsumer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tokens = TokenService.from_settings(self.settings)
        self.free_space = FreeSpace(self.storage, self.settings.storage_min_free_bytes)
        self.stream_slots = create_stream_slots(self.settings)
        self.stripe = StripeService(self.settings)
        self.usage_reporter = (UsageReporter(self.settings, self.db, self.stripe.client)
                               if self.stripe.client is not None else None)
        self.lease_renewer = LeaseRenewer(self.runner)
        self.housekeeper = Housekeeper(self.db, self.dispatcher, self.settings, self.storage)
        if isinstance(self.dispatcher, RedisDispatcher) and self.dispatcher.executes_locally:
            self.consumer = QueueConsumer(self.dispatcher.broker, self.runner, self.settings.workers,
                                          self.settings.worker_drain_s)

    @classmethod
    def build(cls, settings: Settings, *, worker: bool = False) -> AppContext:
        """``worker``: a ``fmu-gateway-admin worker`` process, which executes runs from the broker."""
        executes = worker or settings.executes_runs
        for directory in (settings.var_dir, settings.upload_tmp_dir, settings.sandbox_dir):
            directory.mkdir(parents=True, exist_ok=True)
        db = Database(settings)
        storage = create_storage(settings)
        limits = ArchiveLimits(max_uncompressed_bytes=settings.max_extracted_bytes,
                               max_ratio=settings.max_compression_ratio,
                               max_variables=settings.max_model_variables,
                               max_model_info_bytes=settings.max_model_info_bytes)
        cache = FmuCache(settings.cache_dir / "fmus", storage, limits)
        # With a broker, runs change in other processes too: their changes come over Redis.
        notifier = (RelayedNotifier(settings.broker_url, settings.redis_key_prefix) if settings.broker_url
                    else RunNotifier())
        backend = (create_backend(settings.sandbox, work_dir=settings.sandbox_dir, production=settings.production,
                                  docker=settings.docker_sandbox)
                   if executes else NoSandboxes(settings.sandbox_dir))
        reuse = (Reuse(settings.sandbox_reuse_max_runs, settings.sandbox_reuse_idle_s,
                       settings.sandbox_reuse_max_sandboxes) if settings.sandbox_reuse and executes else None)
        pool = SandboxPool(backend, default_limits(settings), settings.resolved_warm_sandboxes if executes else 0,
                           reuse)
        runner = FmuRunner(settings, db, storage, cache, pool, notifier)
        dispatcher: Dispatcher
        if settings.broker_url:
            dispatcher = RedisDispatcher(db, settings.broker_url, settings.broker_namespace, runner.execute,
                                         executes_locally=executes)
        else:
            dispatcher = InProcessDispatcher(db, runner.execute, settings.workers)
        limiter = create_rate_limiter(settings)
        idempotency = IdempotencyStore(db, settings.secret_key.get_secret_value())
        return cls(settings, db, storage, cache, limits, notifier, runner, dispatcher, limiter, idempotency)

    def start(self) -> None:
        self.runner.sandboxes.backend.remove_leftovers()
        self.runner.sandboxes.start()
        if isinstance(self.notifier, RelayedNotifier):
            self.notifier.start()
        self.dispatcher.start()
        self.lease_renewer.start()
        self.housekeeper.start()
        if self.consumer is not None:
            self.consumer.start()
        if self.usage_reporter is not None:
            self.usage_reporter.start()

    def stop(self) -> None:
        if self.usage_reporter is not None:
            self.usage_reporter.stop()
        if self.consumer is not None:
            self.consumer.stop()
        self.housekeeper.stop()
        self.runner.stop()
        self.lease_renewer.stop()
        self.dispatcher.shutdown()
        if self.rate_limiter is not None:
            self.rate_limiter.close()
        self.stream_slots.close()
        if isinstance(self.notifier, RelayedNotifier):
            self.notifier.stop()
        self.db.dispose()
