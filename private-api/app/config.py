"""Settings: read once from ``FMU_GATEWAY_*`` environment variables and ``private-api/.env``."""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.sandbox.backends import DockerSettings

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent

# HS256 wants a key of at least the hash's 32 bytes.
MIN_JWT_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FMU_GATEWAY_",
        env_file=PACKAGE_ROOT / ".env",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    # Everything the embedded defaults write (database, blobs, cache, sandboxes) lives here.
    var_dir: Path = REPO_ROOT / "var"
    database_url: str = ""
    # Blob storage (FMU archives, results, logs): a local directory, or an S3 bucket shared by every
    # API and worker process. The bucket is the operator's to create; start-up fails without it.
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    # Local storage: below this many free bytes, uploads, runs and sweeps are refused (507
    # storage_full). The default fits a largest upload (200 MiB) and a largest result (256 MiB)
    # admitted just above it; 0 turns the check off. S3 has no such limit.
    storage_min_free_bytes: int = Field(default=512 << 20, ge=0)
    s3_bucket: str = ""
    # Keys are stored under this prefix, so one bucket can hold several deployments.
    s3_prefix: str = ""
    # Empty: AWS S3 itself; set for an S3-compatible server (MinIO, Ceph, ...).
    s3_endpoint_url: str = ""
    s3_region: str = ""
    # GET /v1/runs/{id}/result?format=arrow answers 307 to a presigned URL of the bucket, so result
    # bytes skip the API process (clients must follow redirects; the SDK does).
    s3_presign_results: bool = False
    s3_presign_ttl_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)  # S3's own limit is 7 days
    # Keyed hash of API keys; change it and every issued key stops working.
    secret_key: SecretStr = SecretStr("dev-insecure-change-me")
    # Signs the access tokens of POST /v1/auth/token (HS256). Empty: derived from secret_key, which
    # only development and test allow; production refuses to start without a real one.
    jwt_secret: SecretStr = Field(default=SecretStr(""), validation_alias=AliasChoices(
        "FMU_GATEWAY_JWT_SECRET", "JWT_SECRET", "jwt_secret"))
    jwt_ttl_s: int = Field(default=600, ge=1)  # access tokens live minutes: revocation is checked anyway
    jwt_issuer: str = "fmu-gateway"
    jwt_audience: str = "fmu-gateway-api"

    sandbox: Literal["bwrap", "docker", "process"] = "bwrap"
    # The docker sandbox: runner image (make build), optional runtime such as gVisor's runsc, the CPU
    # quota of one run, and the engine (empty: DOCKER_HOST or the local socket).
    docker_image: str = "fmu-gateway-runner:latest"
    docker_runtime: str = ""
    docker_cpus: float = Field(default=1.0, ge=0)
    docker_host: str = ""
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # Sandboxes kept started with FMPy imported, so a run skips Python's start-up (0 = none).
    warm_sandboxes: int | None = None
    # bwrap, docker: one warm sandbox per tenant forks each run into namespaces of its own
    # (docs/security.md); false: a new sandbox per run. Retired after this many runs or idle seconds.
    sandbox_reuse: bool = True
    sandbox_reuse_max_runs: int = Field(default=1000, ge=1)
    sandbox_reuse_idle_s: float = Field(default=300.0, gt=0)
    sandbox_reuse_max_sandboxes: int = Field(default=16, ge=1)

    # Dramatiq on Redis: when set, API processes only enqueue runs and `fmu-gateway-admin worker`
    # processes execute them. Empty: the embedded in-process pool executes them.
    broker_url: str = ""
    # With a broker, an API process also executes runs (a worker inside it); for small deployments.
    api_executes_runs: bool = False
    # A worker holds a lease on each run it executes and renews it every third of this. Short, as
    # a vanished worker's runs wait for its lease to lapse: queued again within ~this + the poll.
    run_lease_s: float = Field(default=10.0, gt=0)
    # A run whose worker vanished this many times fails with worker_lost (its hold refunded).
    run_max_attempts: int = Field(default=3, ge=1)
    # A queued run handed to the queue this long ago is handed over again (a lost message).
    dispatch_redeliver_s: float = Field(default=120.0, gt=0)
    # How often each process looks for runs to hand over and for lapsed leases.
    dispatch_poll_s: float = Field(default=1.0, gt=0)
    # A stopping worker lets its runs finish this long, then puts the rest back in the queue.
    worker_drain_s: float = Field(default=10.0, ge=0)

    max_upload_bytes: int = 200 << 20
    max_extracted_bytes: int = 1 << 30
    max_compression_ratio: float = 200.0
    # modelDescription.xml: most variables an FMU may declare (counted before any is parsed), and
    # most bytes of the parsed model information stored per FMU (413 either way).
    max_model_variables: int = Field(default=100_000, ge=1)
    max_model_info_bytes: int = Field(default=32 << 20, ge=1 << 10)

    run_default_timeout_s: float = 60.0
    run_max_timeout_s: float = 3600.0
    run_memory_bytes: int = 1 << 30
    run_max_processes: int = 64
    run_max_output_bytes: int = 256 << 20
    run_max_log_bytes: int = 1 << 20
    max_wait_s: float = 60.0
    # Requests per minute per API key come from the caller's tier; this operator override caps
    # every tier (e.g. a small deployment), and 0 turns request limits off.
    rate_limit_per_minute: int | None = Field(default=None, ge=0)
    # With Redis, every API process spends from one request budget per key; without, per process.
    redis_url: str = ""
    redis_key_prefix: str = "fmu-gateway:"
    # Every request body but an upload's is capped here, before authentication reads it (input
    # tables and start values travel in JSON bodies); Stripe's webhooks have a cap of their own.
    max_request_bytes: int = Field(default=1 << 20, ge=1024)
    max_webhook_bytes: int = Field(default=256 << 10, ge=1024)

    # Stripe: an empty API key turns Stripe billing off (checkout answers 503 billing_unavailable).
    stripe_api_key: SecretStr = SecretStr("")
    # Empty: the stripe library's own default API base.
    stripe_api_base: str = ""
    stripe_webhook_secret: SecretStr = SecretStr("")
    # A signed webhook older than this is refused (replay protection, Stripe's default).
    stripe_webhook_tolerance_s: int = 300
    # The library retries connection errors, 409 and 5xx with the same Idempotency-Key.
    stripe_max_network_retries: int = 2
    stripe_timeout_s: float = 30.0
    checkout_success_url: str = "http://127.0.0.1:8000/billing/success?session_id={CHECKOUT_SESSION_ID}"
    checkout_cancel_url: str = "http://127.0.0.1:8000/billing/cancel"
    # Log lines: "text" for a terminal, "json" (one object a line, with request/user/run/sweep ids)
    # for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    # How often each process removes the results and logs past their tier's result_retention_days
    # (0: never; `fmu-gateway-admin purge` does it once).
    retention_interval_s: float = 3600.0
    # GET /metrics (Prometheus): with a token, only to `Authorization: Bearer <token>`; without one,
    # only to clients on this host (a scraper beside it, or a proxy that adds the token).
    metrics_token: SecretStr = SecretStr("")
    # A worker process serves its own /metrics here when set (it has no API to serve them through).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # The usage outbox: how often it is flushed to Stripe, and the backoff of a failed event.
    usage_flush_interval_s: float = 10.0
    usage_flush_batch: int = 100
    usage_backoff_base_s: float = 5.0
    usage_backoff_max_s: float = 3600.0

    # Most live (unrevoked, unexpired) API keys a user may hold, and live grants one model may have:
    # each is a row every authentication or listing may read; more is 409 too_many_api_keys / too_many_grants.
    max_api_keys_per_user: int = Field(default=100, ge=1)
    max_grants_per_fmu: int = Field(default=1000, ge=1)

    # Sweeps: most child runs one sweep may create (each is a row, a hold share and a result).
    sweep_max_children: int = Field(default=10_000, ge=1)
    # Most swept values one sweep may set (children x parameters): its design, checked from the
    # request before anything is sampled.
    sweep_max_values: int = Field(default=200_000, ge=1)
    # Most children of one sweep a worker runs in one sandbox process, one after another (1: each
    # alone); a chunk takes a share of what is left of its sweep, up to this (sweep_service.chunk_size).
    sweep_chunk_size: int = Field(default=64, ge=1, le=256)
    # A chunk is also sized to last about this long, from how long the sweep's children took so
    # far: a chunk is what another tenant's run may wait for (app.runs.scheduling).
    sweep_chunk_seconds: float = Field(default=2.0, gt=0)
    # Server-Sent Events: how often a stream re-reads the database (other processes' changes) and
    # how long it may stay silent before a heartbeat comment keeps proxies from closing it.
    events_poll_s: float = Field(default=0.5, gt=0)
    events_heartbeat_s: float = Field(default=15.0, gt=0)
    # A stream that sees no change re-reads ever less often, doubling up to this: idle streams
    # cost little, and this process's own changes still wake them at once.
    events_poll_max_s: float = Field(default=5.0, gt=0)
    # Open streams per user, across all of its keys (and, with Redis, all API processes); more is
    # 429 too_many_streams. A stream ends after events_max_stream_s; clients resume it with
    # Last-Event-ID, and a slot a crashed process never released lapses after that lifetime.
    events_max_streams_per_user: int = Field(default=20, ge=1)
    events_max_stream_s: float = Field(default=300.0, gt=0)

    dev_user_email: str = "dev@localhost"
    dev_user_credits: int = 1000

    @field_validator("var_dir", "storage_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Sandboxes bind these paths from other working directories: they must be absolute.
        return value.resolve() if value is not None else None

    @model_validator(mode="after")
    def _production_jwt_secret(self) -> Settings:
        # A production token signed with a guessable key would let anyone mint one.
        if self.production and len(self.jwt_secret.get_secret_value()) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(f"production needs FMU_GATEWAY_JWT_SECRET (at least {MIN_JWT_SECRET_LENGTH} characters)")
        return self

    @model_validator(mode="after")
    def _s3_bucket_named(self) -> Settings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("FMU_GATEWAY_STORAGE=s3 needs FMU_GATEWAY_S3_BUCKET")
        return self

    @property
    def resolved_jwt_secret(self) -> str:
        explicit = self.jwt_secret.get_secret_value()
        if explicit:
            return explicit
        return hmac.new(self.secret_key.get_secret_value().encode(), b"fmu-gateway jwt", hashlib.sha256).hexdigest()

    @property
    def resolved_warm_sandboxes(self) -> int:
        return self.workers if self.warm_sandboxes is None else self.warm_sandboxes

    @property
    def docker_sandbox(self) -> DockerSettings:
        return DockerSettings(image=self.docker_image, runtime=self.docker_runtime or None,
                              cpus=self.docker_cpus or None, base_url=self.docker_host or None)

    @property
    def executes_runs(self) -> bool:
        """Whether an API process executes runs itself (always, without a broker)."""
        return not self.broker_url or self.api_executes_runs

    @property
    def broker_namespace(self) -> str:
        return f"{self.redis_key_prefix}dramatiq"

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_api_key.get_secret_value())

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'fmu_gateway.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.var_dir / "storage"

    @property
    def cache_dir(self) -> Path:
        return self.var_dir / "cache"

    @property
    def sandbox_dir(self) -> Path:
        return self.var_dir / "sandboxes"

    @property
    def upload_tmp_dir(self) -> Path:
        return self.var_dir / "tmp"


@lru_cache
def get_settings() -> Settings:
    return Settings()
