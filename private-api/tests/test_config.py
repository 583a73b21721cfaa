from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings


def test_relative_var_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(var_dir=Path("var"), storage_dir=Path("blobs"))
    assert settings.var_dir == tmp_path / "var"
    assert settings.resolved_storage_dir == tmp_path / "blobs"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'var' / 'fmu_gateway.db'}"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMU_GATEWAY_WORKERS", "3")
    monkeypatch.setenv("FMU_GATEWAY_SANDBOX", "process")
    settings = Settings()
    assert settings.workers == 3 and settings.sandbox == "process"
    assert settings.resolved_warm_sandboxes == 3


def test_unknown_sandbox_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMU_GATEWAY_SANDBOX", "chroot")
    with pytest.raises(ValueError, match="sandbox"):
        Settings()


def test_jwt_secret_comes_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "j" * 32)
    assert Settings().resolved_jwt_secret == "j" * 32
    monkeypatch.setenv("FMU_GATEWAY_JWT_SECRET", "f" * 32)
    assert Settings().resolved_jwt_secret == "f" * 32


def test_development_derives_a_jwt_secret_from_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JWT_SECRET", "FMU_GATEWAY_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    one, other = Settings(secret_key="one"), Settings(secret_key="other")
    assert len(one.resolved_jwt_secret) >= 32 and one.resolved_jwt_secret != other.resolved_jwt_secret


def test_production_refuses_to_start_without_a_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JWT_SECRET", "FMU_GATEWAY_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FMU_GATEWAY_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="JWT_SECRET"):
        Settings()
    monkeypatch.setenv("FMU_GATEWAY_JWT_SECRET", "too-short")
    with pytest.raises(ValueError, match="JWT_SECRET"):
        Settings()
    monkeypatch.setenv("FMU_GATEWAY_JWT_SECRET", "s" * 32)
    assert Settings().production


def test_s3_storage_is_configured_by_its_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"STORAGE": "s3", "S3_BUCKET": "blobs", "S3_PREFIX": "prod/",
                        "S3_ENDPOINT_URL": "http://127.0.0.1:9000", "S3_REGION": "eu-central-1",
                        "S3_PRESIGN_RESULTS": "true", "S3_PRESIGN_TTL_S": "120"}.items():
        monkeypatch.setenv(f"FMU_GATEWAY_{name}", value)
    settings = Settings()
    assert (settings.storage, settings.s3_bucket, settings.s3_prefix) == ("s3", "blobs", "prod/")
    assert (settings.s3_endpoint_url, settings.s3_region) == ("http://127.0.0.1:9000", "eu-central-1")
    assert settings.s3_presign_results and settings.s3_presign_ttl_s == 120


def test_s3_storage_without_a_bucket_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMU_GATEWAY_STORAGE", "s3")
    monkeypatch.delenv("FMU_GATEWAY_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="FMU_GATEWAY_S3_BUCKET"):
        Settings()


def test_local_storage_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMU_GATEWAY_STORAGE", raising=False)
    assert Settings().storage == "local" and not Settings().s3_presign_results
