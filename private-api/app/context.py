"""Everything a process needs to serve and execute runs, built once from ``Settings``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.config import Settings
from app.db import Database
from app.dispatch.base import Dispatcher
from app.dispatch.notifier import RunNotifier
from app.dispatch.pool import InProcessDispatcher
from app.fmi.archive import ArchiveLimits
from app.sandbox import create_backend
from app.sandbox.cleanup import remove_stale_sandboxes
from app.sandbox.pool import SandboxPool
from app.services.auth_service import UsageMarks
from app.services.fmu_cache import FmuCache
from app.services.fmu_runner import FmuRunner, default_limits
from app.services.idempotency import IdempotencyStore
from app.services.rate_limit import RateLimiter, create_rate_limiter
from app.services.stripe_service import StripeService
from app.services.token_service import TokenService
from app.services.usage_reporter import UsageReporter
from app.storage import Storage, create_storage

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
    usage_marks: UsageMarks = field(init=False, default_factory=UsageMarks)
    stripe: StripeService = field(init=False)
    # Reports the usage outbox to Stripe; None when Stripe is not configured.
    usage_reporter: UsageReporter | None = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenService.from_settings(self.settings)
        self.stripe = StripeService(self.settings, self.db)
        self.usage_reporter = (UsageReporter(self.settings, self.db, self.stripe.client)
                               if self.stripe.client is not None else None)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        for directory in (settings.var_dir, settings.upload_tmp_dir, settings.sandbox_dir):
            directory.mkdir(parents=True, exist_ok=True)
        db = Database(settings)
        storage = create_storage(settings)
        limits = ArchiveLimits(max_uncompressed_bytes=settings.max_extracted_bytes,
                               max_ratio=settings.max_compression_ratio)
        cache = FmuCache(settings.cache_dir / "fmus", storage, limits)
        notifier = RunNotifier()
        backend = create_backend(settings.sandbox, work_dir=settings.sandbox_dir,
                                 production=settings.production)
        pool = SandboxPool(backend, default_limits(settings), settings.resolved_warm_sandboxes)
        runner = FmuRunner(settings, db, storage, cache, pool, notifier.publish)
        dispatcher = InProcessDispatcher(runner.execute, settings.workers)
        limiter = create_rate_limiter(settings)
        idempotency = IdempotencyStore(db, settings.secret_key.get_secret_value())
        return cls(settings, db, storage, cache, limits, notifier, runner, dispatcher, limiter, idempotency)

    def start(self) -> None:
        remove_stale_sandboxes(self.settings.sandbox_dir)
        self.runner.sandboxes.start()
        self.dispatcher.start()
        recovered = self.runner.recover()
        if recovered:
            log.info("re-queueing %d unfinished run(s)", len(recovered))
        for run_id in recovered:
            self.dispatcher.submit(run_id)
        if self.usage_reporter is not None:
            self.usage_reporter.start()

    def stop(self) -> None:
        if self.usage_reporter is not None:
            self.usage_reporter.stop()
        self.runner.stop()
        self.dispatcher.shutdown()
        if self.rate_limiter is not None:
            self.rate_limiter.close()
        self.db.dispose()
