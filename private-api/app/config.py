"""Settings: read once from ``FMU_GATEWAY_*`` environment variables and ``private-api/.env``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent


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
    storage_dir: Path | None = None
    # Keyed hash of API keys; change it and every issued key stops working.
    secret_key: SecretStr = SecretStr("dev-insecure-change-me")

    sandbox: Literal["bwrap", "process"] = "bwrap"
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # Sandboxes kept started with FMPy imported, so a run skips Python's start-up (0 = none).
    warm_sandboxes: int | None = None

    max_upload_bytes: int = 200 << 20
    max_extracted_bytes: int = 1 << 30
    max_compression_ratio: float = 200.0

    run_default_timeout_s: float = 60.0
    run_max_timeout_s: float = 3600.0
    run_memory_bytes: int = 1 << 30
    run_max_processes: int = 64
    run_max_output_bytes: int = 256 << 20
    run_max_log_bytes: int = 1 << 20
    max_wait_s: float = 60.0
    # Requests per minute per API key (0 = unlimited); tiers refine this with billing.
    rate_limit_per_minute: int = 600
    # Input tables and start values travel in the request body; keep them bounded.
    max_request_bytes: int = 16 << 20

    dev_user_email: str = "dev@localhost"
    dev_user_credits: int = 1000

    @field_validator("var_dir", "storage_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Sandboxes bind these paths from other working directories: they must be absolute.
        return value.resolve() if value is not None else None

    @property
    def resolved_warm_sandboxes(self) -> int:
        return self.workers if self.warm_sandboxes is None else self.warm_sandboxes

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
