"""``/console``: the web console's page and its static assets, served by the API itself.

Only the files shipped in ``static/`` are served (looked up by name, never joined onto a path),
under a strict Content-Security-Policy: every script and style comes from this origin, and the
console's own code talks only to this origin's ``/v1`` API."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app.errors import NotFound

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def load_assets(root: Path = STATIC) -> dict[str, Asset]:
    """Every servable file under ``root`` by its relative path, read once."""
    assets = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        body = path.read_bytes()
        # Revalidated on every load (a 304 when unchanged): an upgrade is seen at once, vendored files included.
        assets[name] = Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"', "no-cache")
    return assets


ASSETS = load_assets()
router = APIRouter(tags=["console"], include_in_schema=False)


def _serve(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": asset.cache_control}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


@router.get("/console")
@router.get("/console/")
def console_page(request: Request) -> Response:
    return _serve(request, ASSETS["index.html"])


@router.get("/console/{name:path}")
def console_asset(name: str, request: Request) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("The console has no such file.")
    return _serve(request, asset)
