from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from app import __version__
from app.auth.dependencies import Ctx

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    sandbox: str


@router.get("/healthz", response_model=Health)
def healthz(ctx: Ctx) -> Health:
    with ctx.db.session() as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__, sandbox=ctx.settings.sandbox)
