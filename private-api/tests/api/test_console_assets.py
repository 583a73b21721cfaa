"""``/console``: the web console's page and assets, served by the gateway itself under a strict
Content-Security-Policy, and nothing but the files it ships."""

from __future__ import annotations

import re

import httpx
import pytest
from gateway_process import Gateway

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "frame-ancestors 'none'")


def get(gateway: Gateway, path: str, **headers: str) -> httpx.Response:
    return httpx.get(gateway.base_url + path, headers=headers, timeout=30)


class TestConsolePage:
    def test_console_is_served_without_an_api_key(self, gateway: Gateway) -> None:
        response = get(gateway, "/console")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["content-security-policy"].startswith(CSP)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert 'data-testid="api-key-input"' in response.text

    def test_page_has_no_inline_script_or_style(self, gateway: Gateway) -> None:
        html = get(gateway, "/console").text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert "<style" not in html and " style=" not in html

    def test_every_script_and_stylesheet_it_links_is_served(self, gateway: Gateway) -> None:
        html = get(gateway, "/console").text
        linked = re.findall(r'(?:src|href)="(/console/[^"]+)"', html)
        assert any(path.endswith("uPlot.iife.min.js") for path in linked)
        for path in linked:
            response = get(gateway, path)
            assert response.status_code == 200, path
            assert "content-security-policy" in response.headers


class TestConsoleAsset:
    @pytest.mark.parametrize(("path", "content_type"), [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ])
    def test_asset_has_its_content_type(self, gateway: Gateway, path: str, content_type: str) -> None:
        response = get(gateway, path)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["cache-control"] == "no-cache"

    def test_an_unchanged_asset_is_304(self, gateway: Gateway) -> None:
        etag = get(gateway, "/console/app.js").headers["etag"]
        assert get(gateway, "/console/app.js", **{"If-None-Match": etag}).status_code == 304

    def test_vendored_library_is_revalidated_like_the_rest(self, gateway: Gateway) -> None:
        response = get(gateway, "/console/vendor/uplot/uPlot.iife.min.js")
        assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]

    @pytest.mark.parametrize("path", ["/console/nope.js", "/console/../app/main.py", "/console/%2e%2e/routes.py",
                                      "/console/..%2froutes.py", "/console/vendor/uplot/LICENSE",
                                      "/console//etc/passwd"])
    def test_anything_but_a_shipped_file_is_404(self, gateway: Gateway, path: str) -> None:
        assert get(gateway, path).status_code == 404

    def test_console_is_not_in_the_contract(self, gateway: Gateway) -> None:
        assert not [path for path in get(gateway, "/openapi.json").json()["paths"] if path.startswith("/console")]
