"""A run's or sweep's Idempotency-Key is bound to a hash of its request: equal requests hash alike,
whatever fields a later release adds with defaults."""

from __future__ import annotations

from app.idempotency.store import submission_hash
from app.runs.schemas import RunCreate


def digest(**fields: object) -> str:
    return submission_hash("fmu_1", RunCreate.model_validate(fields), "key_1")


def test_fields_left_at_their_defaults_do_not_change_the_hash() -> None:
    assert digest() == digest(validate=True, debug_logging=False, start_values={})
    assert digest(stop_time=2.0) == digest(stop_time=2.0, output=None)


def test_any_field_that_differs_changes_it() -> None:
    assert len({digest(), digest(stop_time=2.0), digest(step_size=0.1, solver="Euler", fmi_type="ModelExchange"),
                digest(validate=False), digest(debug_logging=True)}) == 5
    assert submission_hash("fmu_1", RunCreate(), "key_1") != submission_hash("fmu_2", RunCreate(), "key_1")
    assert submission_hash("fmu_1", RunCreate(), "key_1") != submission_hash("fmu_1", RunCreate(), "key_2")
