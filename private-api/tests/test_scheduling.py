"""Whose turn it is (app.runs.scheduling) and how long a chunk may take (app.sweeps.service)."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.runs.scheduling import Waiting, next_tenant
from app.sweeps.service import chunk_size, fit_in_time

T0 = datetime(2026, 1, 1)


def waiting(user_id: str, running: int, waited_s: float) -> Waiting:
    return Waiting(running, T0 - timedelta(seconds=waited_s), user_id)


def test_a_tenant_with_fewer_runs_running_goes_first() -> None:
    sweep, single = waiting("a", 64, 600), waiting("b", 0, 1)
    assert next_tenant([sweep, single], "a") == "b"
    assert next_tenant([sweep, single], "b") is None


def test_among_tenants_running_as_many_the_one_waiting_longest_goes_first() -> None:
    tenants = [waiting("a", 2, 10), waiting("b", 2, 30), waiting("c", 3, 99)]
    assert next_tenant(tenants, "a") == "b"
    assert next_tenant(tenants, "c") == "b"
    assert next_tenant(tenants, "b") is None


def test_a_message_whose_tenant_has_nothing_queued_makes_no_detour() -> None:
    assert next_tenant([waiting("b", 0, 5)], "a") is None
    assert next_tenant([], "a") is None


def test_a_chunk_lasts_about_the_target_once_a_childs_time_is_known() -> None:
    size = chunk_size(10_000, 64, threads=2)
    assert size == 64
    assert fit_in_time(size, None, 2.0) == 1  # nothing known: one child, to learn
    assert fit_in_time(size, 1.0, 2.0) == 2
    assert fit_in_time(size, 5.0, 2.0) == 1  # a child longer than the target runs alone
    assert fit_in_time(size, 0.001, 2.0) == 64  # fast children: the guided size
    assert fit_in_time(size, 0.0, 2.0) == 64
