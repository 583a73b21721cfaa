"""Screenshots of every page of the web console for docs/console.md, taken in headless Chromium
against a real gateway with real models, runs and a sweep (the browser tests' own helpers).

    .venv/bin/python private-api/tests/browser/screenshots.py [OUT_DIR]

OUT_DIR defaults to docs/images/console. Not part of the test suite, so a test run never rewrites
the documentation's images. Exits non-zero if a page does not render or the browser logs an error.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BROWSER_TESTS = Path(__file__).resolve().parent
PRIVATE_TESTS = BROWSER_TESTS.parent
for _path in (BROWSER_TESTS, PRIVATE_TESTS / "api", PRIVATE_TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
from console_page import DESKTOP, NARROW, Console, chromium_missing, start_chrome  # noqa: E402
from fmus.build import build_fmu  # noqa: E402
from gateway_process import REPO_ROOT, Gateway, running_gateway  # noqa: E402
from thirdparty.fetch import fetch_thirdparty_fmus  # noqa: E402

OUT_DIR = REPO_ROOT / "docs" / "images" / "console"


def upload(api: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = api.post("/v1/fmus", files={"file": (path.name, handle)})
    response.raise_for_status()
    return str(response.json()["id"])


def seed(gateway: Gateway, api_key: str, work: Path) -> dict[str, str]:
    """Models, runs, a sweep and a second key: what a user who has been at it a while sees."""
    api = gateway.client(api_key)
    vanderpol = upload(api, build_fmu("VanDerPol", work))
    upload(api, build_fmu("Feedthrough", work))
    thirdparty = fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")
    if "om_fmi2" in thirdparty:
        upload(api, thirdparty["om_fmi2"])
    run = api.post(f"/v1/fmus/{vanderpol}/runs", params={"wait": 30},
                   json={"stop_time": 20, "start_values": {"mu": 1.5}}).json()
    api.post(f"/v1/fmus/{vanderpol}/runs", params={"wait": 30}, json={"stop_time": 10}).raise_for_status()
    sweep = api.post(f"/v1/fmus/{vanderpol}/sweeps",
                     json={"method": "grid", "parameters": {"mu": [0.5, 1.0, 2.0, 4.0]}, "stop_time": 20}).json()
    api.post("/v1/api-keys", json={"name": "ci-pipeline"}).raise_for_status()
    for _ in range(300):
        if api.get(f"/v1/sweeps/{sweep['id']}").json()["status"] == "finished":
            break
        time.sleep(0.2)
    return {"fmu": vanderpol, "run": run["id"], "sweep": sweep["id"]}


def take(console: Console, out_dir: Path, name: str, route: str, ready: Callable[[], object],
         size: tuple[int, int] = DESKTOP, whole_page: bool = False) -> None:
    """``whole_page``: as tall as the page (up to 2400 px), for pages whose point is below the fold."""
    console.resize(*size)
    console.go(route)
    console.wait(ready, f"{route} did not render", timeout=60)
    console.driver.execute_script("window.scrollTo(0, 0); document.activeElement?.blur()")
    if whole_page:
        height = console.driver.execute_script("return document.documentElement.scrollHeight")
        console.resize(size[0], min(int(height), 2400))
        time.sleep(0.5)  # the charts follow their container's new size
    console.screenshot(out_dir / f"{name}.png")
    print(out_dir / f"{name}.png")


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    reason = chromium_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp, running_gateway("screenshots",
                                                               FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gateway:
        api_key = gateway.create_user(credits=5000, tier="pro", email="ada@example.com")
        ids = seed(gateway, api_key, Path(tmp))
        driver = start_chrome(Path(tmp) / "downloads", DESKTOP)
        try:
            console = Console(driver, gateway.base_url, Path(tmp) / "downloads")
            console.sign_in(api_key)
            pages: list[tuple[str, str, Callable[[], object]]] = [
                ("models", "/models", lambda: len(console.fmu_rows()) >= 2),
                ("run", f"/runs/{ids['run']}", lambda: console.text_of("run-status") == "succeeded"
                 and console.plot_is_drawn()),
                ("runs", "/runs", lambda: ids["run"] in console.find("#main").get_attribute("innerHTML")),
                ("billing", "/billing", lambda: console.shown("credits-balance").text.strip()),
                ("keys", "/keys", lambda: "ci-pipeline" in console.find("#main").text),
            ]
            for name, route, ready in pages:
                take(console, out_dir, name, route, ready)
            take(console, out_dir, "model", f"/models/{ids['fmu']}", lambda: console.shown("variables-table"),
                 whole_page=True)
            take(console, out_dir, "sweep", f"/sweeps/{ids['sweep']}", lambda: console.shown("sweep-progress")
                 and console.plot_is_drawn("sweep-series-plot"), whole_page=True)
            take(console, out_dir, "run-narrow", f"/runs/{ids['run']}",
                 lambda: console.text_of("run-status") == "succeeded" and console.plot_is_drawn(), size=NARROW)
            errors = console.console_errors()
        finally:
            driver.quit()
    if errors:
        print("the browser logged errors:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
