"""A test whose service cannot be reached skips, saying why, or fails where
``FMU_GATEWAY_TEST_REQUIRE`` names the service (as .ci/run does for all of them)."""

from __future__ import annotations

from pathlib import Path

import databases
import docker_engine
import pytest
import redis_keys

SKIP, FAIL = pytest.skip.Exception, pytest.fail.Exception
ALL = "docker,postgresql,redis"


@pytest.mark.parametrize(("required", "expected"), [("", SKIP), (ALL, FAIL), ("redis", SKIP)])
def test_an_unreachable_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: str,
                                   expected: type[BaseException]) -> None:
    monkeypatch.setenv("FMU_GATEWAY_TEST_REQUIRE", required)
    monkeypatch.setattr(databases, "POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(BaseException) as raised, databases.temporary_database("postgresql", tmp_path):
        pass
    assert raised.type is expected and "127.0.0.1:1" in str(raised.value)


@pytest.mark.parametrize(("required", "expected"), [("", SKIP), (ALL, FAIL), ("redis", FAIL), ("docker", SKIP)])
def test_an_unreachable_redis(monkeypatch: pytest.MonkeyPatch, required: str, expected: type[BaseException]) -> None:
    monkeypatch.setenv("FMU_GATEWAY_TEST_REQUIRE", required)
    monkeypatch.setattr(redis_keys, "REDIS_URL", "redis://127.0.0.1:1/7")
    with pytest.raises(BaseException) as raised, redis_keys.temporary_redis_prefix("unreachable"):
        pass
    assert raised.type is expected and "127.0.0.1:1" in str(raised.value)


@pytest.mark.parametrize(("required", "expected"), [("", SKIP), (ALL, FAIL), ("redis", SKIP)])
def test_no_docker_engine(monkeypatch: pytest.MonkeyPatch, required: str, expected: type[BaseException]) -> None:
    monkeypatch.setenv("FMU_GATEWAY_TEST_REQUIRE", required)
    monkeypatch.setattr(docker_engine, "docker_available", lambda: "no engine answers at unix:///nowhere")
    with pytest.raises(BaseException) as raised:
        docker_engine.require_docker()
    assert raised.type is expected and "unix:///nowhere" in str(raised.value)
