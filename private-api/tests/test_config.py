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
