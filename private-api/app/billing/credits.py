"""The credit ledger: every balance change is an append-only entry with a unique idempotency
key, written in the same transaction as the cached balance on ``users.credits``.

The balance can never go below zero: debits are a conditional ``UPDATE … WHERE credits + amount
>= 0`` backed by the ``credits_non_negative`` CHECK constraint. An effect retried under the same
key (a replayed webhook, a re-run settlement) is written once and changes nothing the second time.

A run's money: ``hold`` (minus the worst case) at submission → ``settle`` (records the real cost) and
``release`` (+the rest) when it ends, or ``refund`` (+everything) when the platform failed it. A
grantee's run of a shared model that succeeds also pays the model's owner: ``earning`` (+its price
less the platform fee) on the owner's ledger, in the same transaction.

The decisions (amounts, keys, which entries) are made here, the SQL is in ``app.billing.repository``.
Nothing here commits: each entry is a savepoint in the transaction of the request or worker task
that calls, which commits it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.billing import pricing
from app.billing import repository as billing_repository
from app.billing.models import LedgerEntry
from app.errors import NotFound, ProblemError
from app.kit.models import new_id, utcnow
from app.runs import repository as run_repository
from app.runs.models import Run
from app.sweeps.models import Sweep


class InsufficientCredits(ProblemError):
    status = 402
    code = "insufficient_credits"
    title = "Insufficient credits"


def post(session: Session, user_id: str, kind: str, amount: int, key: str, *, run_id: str | None = None,
         reference: str | None = None, description: str | None = None,
         details: dict[str, Any] | None = None) -> LedgerEntry | None:
    """Apply one entry; ``None`` if an entry with ``key`` exists already (nothing changes then).

    Raises ``InsufficientCredits`` when a debit would take the balance below zero.

    The key's uniqueness decides, not a look first: an entry written before fails the INSERT and
    the savepoint undoes the balance change (one statement less on every run's way)."""
    try:
        with session.begin_nested():
            balance = billing_repository.apply_balance_change(session, user_id, amount)
            if balance is None:
                if billing_repository.has_ledger_entry(session, key):
                    return None  # a debit applied before, when the balance still covered it
                if billing_repository.get_user(session, user_id) is None:
                    raise NotFound(f"No user {user_id!r}.")
                raise InsufficientCredits(f"This needs {-amount} credit(s); your balance is too low.",
                                          required=-amount)
            values = {"id": new_id("led"), "user_id": user_id, "kind": kind, "amount": amount,
                      "balance_after": balance, "idempotency_key": key, "run_id": run_id, "reference": reference,
                      "description": description, "details": details, "created_at": utcnow()}
            billing_repository.insert_ledger_entries(session, values)
    except IntegrityError:
        # A concurrent transaction wrote the same key first; ours rolled back to the savepoint.
        if billing_repository.has_ledger_entry(session, key):
            return None
        raise
    return LedgerEntry(**values)  # as written (detached: nothing reads it back)


def hold_for_run(session: Session, run: Run) -> None:
    """Hold a new run's worst-case cost (402 ``insufficient_credits`` if the balance is short)."""
    post(session, run.user_id, "hold", -run.credits_held, f"hold:{run.id}", run_id=run.id,
         description=f"hold for run {run.id}")


def hold_for_sweep(session: Session, sweep: Sweep) -> None:
    """Hold every child's worst case at once, in one entry (402 if the balance is short). The
    children carry their share in ``credits_held`` and settle, release or refund it one by one,
    exactly like a single run's hold."""
    post(session, sweep.user_id, "hold", -sweep.credits_held, f"hold:{sweep.id}",
         description=f"hold for sweep {sweep.id} ({sweep.total} runs)",
         details={"sweep_id": sweep.id, "runs": sweep.total})


def _settlement(run: Run, cost: int, note: str) -> list[dict[str, Any]]:
    """The entries that settle a finished run at ``cost`` (already capped at its hold): the
    settlement itself, and the release of what it did not use."""
    entries: list[dict[str, Any]] = [
        {"kind": "settle", "amount": 0, "idempotency_key": f"settle:{run.id}", "run_id": run.id,
         "description": f"run {run.id} cost {cost} credit(s){note}",
         "details": {"cost": cost, "held": run.credits_held}}]
    if run.credits_held > cost:
        entries.append({"kind": "release", "amount": run.credits_held - cost, "idempotency_key": f"release:{run.id}",
                        "run_id": run.id, "description": f"unused hold of run {run.id}", "details": None})
    return entries


def settle_run(session: Session, run: Run, cost: int, note: str = "") -> None:
    """Charge a finished run ``cost`` (≤ its hold) and release the rest of the hold."""
    cost = min(cost, run.credits_held)
    for index, entry in enumerate(_settlement(run, cost, note)):
        posted = post(session, run.user_id, entry["kind"], entry["amount"], entry["idempotency_key"],
                      run_id=run.id, description=entry["description"], details=entry["details"])
        if posted is None and index == 0:
            return  # settled before
    run_repository.set_charged(session, [{"b_id": run.id, "b_charged": cost}])
    set_committed_value(run, "credits_charged", cost)  # written above: not again at the flush


def settle_runs(session: Session, charges: list[tuple[Run, int, str]]) -> None:
    """``settle_run`` for several finished runs of one user (a sweep chunk's children) in one go:
    the same entries with the same keys, one balance update, one multi-row insert. If any run was
    settled before, the batch is undone and each run goes through ``settle_run`` (idempotent)."""
    if not charges:
        return
    user_id = charges[0][0].user_id
    assert all(run.user_id == user_id for run, _, _ in charges)
    entries: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    for run, cost, note in charges:
        cost = min(cost, run.credits_held)
        costs.append({"id": run.id, "credits_charged": cost})
        entries.extend(_settlement(run, cost, note))
    # Releases only: never below zero.
    if not _post_many(session, user_id, entries, lambda: run_repository.set_charged(
            session, [{"b_id": c["id"], "b_charged": c["credits_charged"]} for c in costs])):
        for run, cost, note in charges:
            settle_run(session, run, cost, note)
        return
    for (run, _, _), charged in zip(charges, costs, strict=True):
        set_committed_value(run, "credits_charged", charged["credits_charged"])


def _post_many(session: Session, user_id: str, entries: list[dict[str, Any]],
               also: Callable[[], None] | None = None) -> bool:
    """Entries of one user that only add credits, in one go: one balance update, one multi-row
    insert, then ``also`` (in the same savepoint). False if any of their keys was written before:
    the savepoint undoes everything, and the caller posts them one by one (``post`` is idempotent)."""
    total = sum(entry["amount"] for entry in entries)
    try:
        with session.begin_nested():
            balance = billing_repository.apply_balance_change(session, user_id, total)
            assert balance is not None  # credits only, to a user who exists
            running = balance - total
            for entry in entries:
                running += entry["amount"]
                entry.update(id=new_id("led"), user_id=user_id, balance_after=running, reference=None,
                             created_at=utcnow())
            billing_repository.insert_ledger_entries(session, entries)
            if also is not None:
                also()
    except IntegrityError:
        return False
    return True


def pay_owners(session: Session, earnings: list[tuple[Run, str, str]]) -> None:
    """Pay the owners of shared models for grantees' runs that succeeded, in the transaction that
    settles those runs: each run's ``owner_credits`` less the owner's tier's platform fee, as one
    ``earning`` entry per run (keyed by the run: paid once). ``earnings``: (run, owner id, owner tier)."""
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for run, owner_id, owner_tier in earnings:
        fee = pricing.platform_fee(owner_tier, run.owner_credits)
        by_owner.setdefault(owner_id, []).append({
            "kind": "earning", "amount": run.owner_credits - fee, "idempotency_key": f"earning:{run.id}",
            "run_id": run.id,
            "description": f"run {run.id} of a model you share: {run.owner_credits} credit(s), less a {fee} fee",
            "details": {"fmu_id": run.fmu_id, "grant_id": run.grant_id, "gross": run.owner_credits, "fee": fee}})
    for owner_id, entries in sorted(by_owner.items()):
        if not _post_many(session, owner_id, entries):
            for entry in entries:
                post(session, owner_id, "earning", entry["amount"], entry["idempotency_key"], run_id=entry["run_id"],
                     description=entry["description"], details=entry["details"])


def refund_run(session: Session, run: Run, reason: str) -> None:
    """Give a run's whole hold back: the platform failed it, so it costs nothing."""
    if billing_repository.has_ledger_entry(session, f"settle:{run.id}"):
        return
    if post(session, run.user_id, "refund", run.credits_held, f"refund:{run.id}", run_id=run.id,
            description=f"run {run.id} refunded: {reason}") is not None:
        # A refund is a settlement at zero: recorded so the run is never settled again.
        post(session, run.user_id, "settle", 0, f"settle:{run.id}", run_id=run.id,
             description=f"run {run.id} cost 0 credits (refunded)", details={"cost": 0, "held": run.credits_held})
    run_repository.set_charged(session, [{"b_id": run.id, "b_charged": 0}])
    set_committed_value(run, "credits_charged", 0)


def credit(session: Session, user_id: str, kind: str, amount: int, key: str, *, reference: str | None = None,
           description: str | None = None, details: dict[str, Any] | None = None) -> LedgerEntry | None:
    """Add credits (a purchase, grant or positive adjustment); outstanding debt is repaid first."""
    entry = post(session, user_id, kind, amount, key, reference=reference, description=description,
                 details=details)
    if entry is None:
        return None
    user = billing_repository.lock_user_for_update(session, user_id)
    assert user is not None
    repay = min(user.debt_credits, amount)
    if repay:
        post(session, user_id, "adjust", -repay, f"debt:{key}", reference=reference,
             description=f"repays {repay} credit(s) of debt")
        billing_repository.repay_debt(session, user_id, repay)
    return entry


def claw_back(session: Session, user_id: str, amount: int, key: str, *, reference: str | None = None,
              description: str | None = None) -> tuple[int, int]:
    """Take back up to ``amount`` credits (a refunded or disputed purchase). What is already spent
    cannot go below zero: it is recorded as debt. Returns (taken, added to debt)."""
    if amount <= 0 or billing_repository.has_ledger_entry(session, key):
        return 0, 0
    user = billing_repository.lock_user_for_update(session, user_id)
    if user is None:
        raise NotFound(f"No user {user_id!r}.")
    taken = min(user.credits, amount)
    debt = amount - taken
    post(session, user_id, "adjust", -taken, key, reference=reference, description=description,
         details={"clawback": amount, "debt": debt})
    if debt:
        billing_repository.add_debt(session, user_id, debt)
    return taken, debt
