"""How observations of a finished sandbox become outcomes (pure functions, no processes)."""

from __future__ import annotations

import os
import signal
from typing import Any

from app.sandbox.base import Limits
from app.sandbox.capture import BoundedLog, ControlMessages
from app.sandbox.outcome import Observation, classify, decode_wait_status

LIMITS = Limits(memory_bytes=512 << 20, cpu_seconds=5)
READY = {"event": "ready", "vm_bytes": 300 << 20, "rss_bytes": 60 << 20}


def observe(**changes: Any) -> Observation:
    fields: dict[str, Any] = {
        "timed_out": False,
        "wait_status": 0,
        "signal_via_exit_code": False,
        "ready": READY,
        "report": {"event": "done", "ok": True},
        "oom_killed": False,
        "detects_oom": True,
        "max_rss_bytes": 70 << 20,
        "cpu_time_s": 0.1,
        "output_problem": None,
    }
    return Observation(**{**fields, **changes})


def killed_by(sig: int) -> int:
    return sig  # a raw wait status for "terminated by signal sig", no core dump


class TestWaitStatus:
    def test_signal_is_decoded(self) -> None:
        assert decode_wait_status(killed_by(signal.SIGSEGV), False) == (None, signal.SIGSEGV)

    def test_bwrap_exit_code_128_plus_n_is_a_signal(self) -> None:
        assert decode_wait_status(134 << 8, True) == (None, signal.SIGABRT)
        assert decode_wait_status(134 << 8, False) == (134, None)

    def test_plain_exit_code(self) -> None:
        status = 3 << 8
        assert os.WIFEXITED(status)
        assert decode_wait_status(status, True) == (3, None)


class TestClassify:
    def test_success(self) -> None:
        verdict = classify(observe(), LIMITS, 10)
        assert (verdict.status, verdict.error_code, verdict.exit_code) == ("succeeded", None, 0)

    def test_deadline_wins_over_everything(self) -> None:
        verdict = classify(observe(timed_out=True, oom_killed=True, wait_status=killed_by(9)), LIMITS, 2.5)
        assert (verdict.status, verdict.error_code, verdict.error_message) == (
            "timed_out",
            None,
            "deadline of 2.5 s exceeded",
        )

    def test_oom_kill_wins_over_the_runner_report(self) -> None:
        verdict = classify(observe(oom_killed=True, wait_status=killed_by(9), report=None), LIMITS, 10)
        assert (verdict.error_code, verdict.signal) == ("memory_limit", "SIGKILL")

    def test_runner_cannot_claim_a_platform_code(self) -> None:
        report = {"event": "done", "ok": False, "error_code": "sandbox_error", "message": "not me"}
        verdict = classify(observe(report=report), LIMITS, 10)
        assert verdict.error_code == "runner_error"

    def test_death_before_ready_is_a_sandbox_error(self) -> None:
        verdict = classify(observe(ready=None, report=None, wait_status=1 << 8), LIMITS, 10)
        assert verdict.error_code == "sandbox_error"

    def test_model_exit_without_report_is_a_crash(self) -> None:
        verdict = classify(observe(report=None, wait_status=0), LIMITS, 10)
        assert verdict.error_code == "model_crashed"

    def test_cpu_limit_is_timed_out(self) -> None:
        verdict = classify(observe(report=None, wait_status=killed_by(signal.SIGXCPU)), LIMITS, 10)
        assert (verdict.status, verdict.error_message) == ("timed_out", "CPU time limit of 5 s exceeded")

    def test_rlimit_crash_after_large_growth_is_memory_limit(self) -> None:
        hog = observe(report=None, wait_status=killed_by(signal.SIGSEGV), detects_oom=False, max_rss_bytes=250 << 20)
        assert classify(hog, LIMITS, 10).error_code == "memory_limit"
        small = observe(report=None, wait_status=killed_by(signal.SIGSEGV), detects_oom=False)
        assert classify(small, LIMITS, 10).error_message == "model crashed with SIGSEGV"

    def test_rlimit_crash_near_the_address_space_limit_is_memory_limit_even_unsampled(self) -> None:
        # The runner was ready at 450 of 512 MiB; its supervisor last sampled VmPeak mid-warm-up.
        ready = {**READY, "vm_bytes": 450 << 20}
        hog = observe(report=None, wait_status=killed_by(signal.SIGSEGV), detects_oom=False, ready=ready,
                      peak_vm_bytes=300 << 20)
        assert classify(hog, LIMITS, 10).error_code == "memory_limit"
        roomy = observe(report=None, wait_status=killed_by(signal.SIGSEGV), detects_oom=False, peak_vm_bytes=300 << 20)
        assert classify(roomy, LIMITS, 10).error_code == "model_crashed"

    def test_unusable_output_fails_a_reported_success(self) -> None:
        verdict = classify(observe(output_problem=("output_too_large", "too big")), LIMITS, 10)
        assert (verdict.status, verdict.error_code) == ("failed", "output_too_large")


class TestBoundedLog:
    def test_short_log_is_kept_whole(self) -> None:
        log = BoundedLog(100)
        log.feed(b"hello ")
        log.feed(b"world")
        assert log.text() == "hello world"

    def test_long_log_keeps_head_and_tail(self) -> None:
        log = BoundedLog(1000)
        for i in range(100_000):
            log.feed(f"line {i}\n".encode())
        text = log.text()
        assert text.startswith("line 0\n")
        assert text.endswith("line 99999\n")
        assert "bytes of log truncated" in text
        assert len(text.encode()) < 1100


class TestControlMessages:
    def test_split_lines_and_garbage(self) -> None:
        control = ControlMessages()
        control.feed(b'{"event": "rea')
        control.feed(b'dy", "pid": 1}\nnot json\n[1]\n{"event": "done", "ok": true}\n')
        assert control.get("ready") == {"event": "ready", "pid": 1}
        assert control.get("done") == {"event": "done", "ok": True}

    def test_first_message_of_an_event_wins(self) -> None:
        control = ControlMessages()
        control.feed(b'{"event": "done", "ok": false}\n{"event": "done", "ok": true}\n')
        assert control.get("done") == {"event": "done", "ok": False}
