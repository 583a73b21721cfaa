"""``fmu-gateway-admin``: operator commands (migrations, users, API keys, the dev server)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from app import logs
from app.auth import service as auth_service
from app.auth.models import SCOPES
from app.billing import credits as ledger
from app.billing import repository as billing_repository
from app.billing.pricing import load_pricing
from app.config import get_settings
from app.db import Database
from app.errors import ProblemError
from app.kit.models import utcnow
from app.migrate import upgrade

cli = typer.Typer(help="FMU Gateway operator commands.", no_args_is_help=True, add_completion=False)


@contextmanager
def _write_session() -> Iterator[Session]:
    """A migrated database's write session; business errors end the command with exit code 1."""
    settings = get_settings()
    upgrade(settings.resolved_database_url)
    db = Database(settings)
    try:
        with db.session(write=True) as session:
            yield session
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    finally:
        db.dispose()


@cli.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision."""
    settings = get_settings()
    upgrade(settings.resolved_database_url)
    typer.echo(f"database at head: {settings.resolved_database_url.split('@')[-1]}")


@cli.command("create-user")
def create_user(email: Annotated[str, typer.Option(help="The user's email (unique).")],
                credits: Annotated[int, typer.Option(min=0, help="Starting credit balance.")] = 0,
                live: Annotated[bool, typer.Option(help="Issue an fmu_live_ key, not fmu_test_.")] = False,
                display_name: Annotated[str | None, typer.Option(
                    help="How others see the user where it shares a model (else its user id).")] = None,
                ) -> None:
    """Create a user with an API key; the key is the last line of output."""
    if display_name is not None and not 0 < len(display_name) <= 100:
        raise typer.BadParameter("1 to 100 characters", param_hint="--display-name")
    with _write_session() as session:
        user = auth_service.create_user(session, email, credits, display_name=display_name)
        key = auth_service.issue_api_key(session, user, get_settings().secret_key.get_secret_value(), live=live)
        session.commit()
    typer.echo(f"created user {user.id} <{email}> with {credits} credits")
    typer.echo(key)


@cli.command("create-key")
def create_key(email: Annotated[str, typer.Option(help="The user's email.")],
               name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
               scope: Annotated[list[str] | None, typer.Option(
                   help=f"Limit the key to these scopes (repeatable): {', '.join(SCOPES)}. Default: all.")] = None,
               ) -> None:
    """Issue another API key for an existing user; the key is the last line of output."""
    with _write_session() as session:
        user = auth_service.get_user_by_email(session, email)
        if user is None:
            typer.echo(f"error: no user with email {email!r}", err=True)
            raise typer.Exit(1)
        key = auth_service.issue_api_key(session, user, get_settings().secret_key.get_secret_value(), name=name,
                                         scopes=scope)
        session.commit()
    typer.echo(key)


@cli.command()
def grant(email: Annotated[str, typer.Option(help="The user's email.")],
          credits: Annotated[int, typer.Option(help="Credits to add (negative: take back, never below zero).")],
          reason: Annotated[str, typer.Option(help="Why; kept in the ledger.")],
          key: Annotated[str | None, typer.Option(help="Idempotency key: a repeated grant with it does nothing.")]
          = None) -> None:
    """Adjust a user's credits through the ledger."""
    key = key or f"admin:{uuid.uuid4().hex}"
    with _write_session() as session:
        user = auth_service.get_user_by_email(session, email)
        if user is None:
            typer.echo(f"error: no user with email {email!r}", err=True)
            raise typer.Exit(1)
        if credits >= 0:
            ledger.credit(session, user.id, "grant", credits, key, description=reason)
        else:
            ledger.claw_back(session, user.id, -credits, key, description=reason)
        session.commit()
        session.refresh(user)
    typer.echo(f"{email}: balance {user.credits}, debt {user.debt_credits}")


@cli.command("set-tier")
def set_tier(email: Annotated[str, typer.Option(help="The user's email.")],
             tier: Annotated[str, typer.Option(help="A tier id from shared-specs/pricing_tiers.json.")]) -> None:
    """Put a user on a tier (contracts sold outside Stripe, e.g. enterprise)."""
    try:
        load_pricing().tier(tier)
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    with _write_session() as session:
        user = auth_service.get_user_by_email(session, email)
        if user is None:
            typer.echo(f"error: no user with email {email!r}", err=True)
            raise typer.Exit(1)
        user.tier = tier
        session.commit()
    typer.echo(f"{email}: tier {tier}")


@cli.command()
def purge() -> None:
    """Remove the results and logs of runs past their tier's result_retention_days now (every
    process does it every FMU_GATEWAY_RETENTION_INTERVAL_S anyway)."""
    from app.runs import retention
    from app.storage import create_storage

    settings = get_settings()
    upgrade(settings.resolved_database_url)
    expired = retention.purge(Database(settings), create_storage(settings))
    typer.echo(f"{expired} run(s) past retention: result and log removed")


@cli.command("usage-events")
def usage_events(status: Annotated[str, typer.Option(help="pending, sent, skipped or rejected.")] = "rejected",
                 limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100) -> None:
    """Usage events reported to Stripe in a status, oldest first: by default those Stripe refused
    for good, which are not retried until ``retry-usage-events`` says so."""
    with _write_session() as session:
        events = billing_repository.usage_events_of_status(session, status, limit)
        for event in events:
            typer.echo(f"{event.id}\t{event.identifier}\tuser {event.user_id}\tvalue {event.value}\t"
                       f"attempts {event.attempts}\t{event.last_error or ''}")
    typer.echo(f"{len(events)} {status} usage event(s)", err=True)


@cli.command("retry-usage-events")
def retry_usage_events(event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids; none: all.")] = None,
                       ) -> None:
    """Send rejected usage events again (after fixing what Stripe refused, e.g. a customer)."""
    with _write_session() as session:
        count = billing_repository.retry_rejected_usage_events(session, event_ids or None, utcnow())
        session.commit()
    typer.echo(f"{count} rejected usage event(s) pending again")


@cli.command("ensure-dev-user")
def ensure_dev_user(key_file: Annotated[Path, typer.Option(help="Where the dev API key is kept.")]) -> None:
    """Make sure the development user exists and ``key_file`` holds a working key for it."""
    settings = get_settings()
    secret = settings.secret_key.get_secret_value()
    with _write_session() as session:
        user = auth_service.get_user_by_email(session, settings.dev_user_email)
        if user is None:
            user = auth_service.create_user(session, settings.dev_user_email, settings.dev_user_credits)
        existing = key_file.read_text().strip() if key_file.exists() else ""
        with contextlib.suppress(ProblemError):
            if existing and auth_service.authenticate(session, f"Bearer {existing}", secret).user_id == user.id:
                typer.echo(existing)
                return
        key = auth_service.issue_api_key(session, user, secret, name="dev")
        session.commit()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    typer.echo(key)


# glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas before any thread starts: by default each busy thread of the
    pools may get an arena of its own (up to 8 per core), which RSS keeps once it has grown
    (docs/performance.md). False where there is no glibc ``mallopt`` (musl, macOS)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        return bool(ctypes.CDLL(name).mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


@cli.command()
def serve(host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
          port: Annotated[int, typer.Option(envvar="PORT")] = 8000) -> None:
    """Apply migrations and serve the API."""
    import uvicorn

    limit_malloc_arenas()
    settings = get_settings()
    upgrade(settings.resolved_database_url)
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, log_level="info",
                log_config=logs.configure(settings.log_format))


@cli.command()
def worker() -> None:
    """Execute runs from the broker (FMU_GATEWAY_BROKER_URL) until SIGTERM or SIGINT."""
    import signal
    import threading

    limit_malloc_arenas()
    from app.context import AppContext

    settings = get_settings()
    if not settings.broker_url:
        typer.echo("error: a worker needs FMU_GATEWAY_BROKER_URL (without it the API executes runs itself)",
                   err=True)
        raise typer.Exit(1)
    upgrade(settings.resolved_database_url)
    logs.configure(settings.log_format)
    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ctx = AppContext.build(settings, worker=True)
    if settings.metrics_port is not None:
        from app import metrics

        metrics.serve_worker_metrics(settings.metrics_host, settings.metrics_port)
    ctx.start()
    logging.getLogger(__name__).info("worker %s started", ctx.runner.worker_id)
    try:
        stop.wait()
    finally:
        logging.getLogger(__name__).info("worker %s stopping", ctx.runner.worker_id)
        ctx.stop()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
