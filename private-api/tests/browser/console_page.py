"""The web console (``/console``) in headless Chromium: Selenium 4 driving Debian's chromedriver.

``Console`` speaks the console's contract, its ``data-testid`` attributes and hash routes, and keeps
the browser's log: every SEVERE entry (a console error, an uncaught exception, a failed request) is
a failure unless the test said it expects it (``allow_severe``). Used by the tests here and by
``screenshots.py``.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CHROMEDRIVER = Path("/usr/bin/chromedriver")
DESKTOP = (1280, 800)
NARROW = (390, 844)
WAIT_S = 15.0

T = TypeVar("T")


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install)"
    if shutil.which("chromium") is None:
        return "no chromium here: apt-get install chromium chromium-driver"
    if not CHROMEDRIVER.is_file():
        return f"no {CHROMEDRIVER} here: apt-get install chromium-driver"
    return None


def start_chrome(download_dir: Path, size: tuple[int, int] = DESKTOP) -> Any:
    """A headless Chromium of ``size`` CSS pixels that saves downloads into ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    download_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={size[0]},{size[1]}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    # Headless Chromium saves downloads only where it is told to over CDP.
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir),
                                                           "eventsEnabled": True})
    set_viewport(driver, size)
    return driver


def set_viewport(driver: Any, size: tuple[int, int]) -> None:
    """A layout viewport of exactly ``size`` (headless windows have a minimum width; a phone has none)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                                  "deviceScaleFactor": 1, "mobile": False})


# Whether a chart is drawn in a canvas or svg: a canvas with coloured pixels (a series' line; axes
# and grid lines are grey), an svg with a path, polyline or line with real coordinates.
_PLOT_IS_DRAWN = """
const plot = arguments[0];
for (const canvas of plot.querySelectorAll('canvas')) {
  if (!canvas.width || !canvas.height) continue;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
    if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60 && ++coloured > 50) return true;
  }
}
for (const svg of plot.querySelectorAll('svg')) {
  for (const shape of svg.querySelectorAll('path, polyline, line')) {
    const d = shape.getAttribute('d') || shape.getAttribute('points') || '';
    if (d.replace(/[^0-9]/g, '').length > 8) return true;
  }
}
return false;
"""


class Console:
    def __init__(self, driver: Any, base_url: str, download_dir: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.download_dir = download_dir
        self.log: list[dict[str, Any]] = []
        self._allowed: list[re.Pattern[str]] = []

    # -- pages and elements ---------------------------------------------------------------

    def open(self, route: str = "") -> None:
        """``route`` is a hash route (``/models``, ``/runs/<id>``), or "" for the console's start."""
        self.driver.get(f"{self.base_url}/console" + (f"#{route}" if route else ""))

    def go(self, route: str) -> None:
        """Follow a hash route within the loaded console (no reload: the session stays)."""
        self.driver.execute_script("window.location.hash = arguments[0]", route)

    @property
    def route(self) -> str:
        return str(self.driver.execute_script("return window.location.hash")).removeprefix("#")

    def find(self, css: str, within: Any = None) -> Any:
        from selenium.webdriver.common.by import By

        return (within or self.driver).find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str, within: Any = None) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list((within or self.driver).find_elements(By.CSS_SELECTOR, css))

    def testid(self, name: str, within: Any = None) -> Any:
        return self.find(f'[data-testid="{name}"]', within)

    def wait(self, condition: Callable[[], T | None], message: str, timeout: float = WAIT_S) -> T:
        """``condition()``'s first truthy value (exceptions count as not yet), or a failure saying ``message``."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = condition()
                if value:
                    return value
            except Exception as error:  # the element is not there yet, or went stale
                last_error = error
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} (after {timeout:.0f} s; last error: {last_error!r};"
                                     f" route {self.route!r}; browser log: {self.read_log()})")
            time.sleep(0.1)

    def shown(self, name: str, timeout: float = WAIT_S) -> Any:
        """The displayed element of ``data-testid=name``, once there is one."""
        return self.wait(lambda: self._displayed(name), f"data-testid={name} is not shown", timeout)

    def _displayed(self, name: str) -> Any:
        for element in self.find_all(f'[data-testid="{name}"]'):
            if element.is_displayed():
                return element
        return None

    def text_of(self, name: str) -> str:
        return str(self.testid(name).text).strip()

    def fill(self, element: Any, value: str) -> None:
        element.clear()
        element.send_keys(value)

    def click(self, name: str) -> None:
        self.shown(name).click()

    # -- what users do ---------------------------------------------------------------------

    def sign_in(self, api_key: str) -> None:
        self.open()
        self.fill(self.shown("api-key-input"), api_key)
        self.click("sign-in")
        self.shown("sign-out")

    def upload(self, path: Path) -> str:
        """Upload ``path`` on the models page; the new row's FMU id."""
        self.go("/models")
        self.wait(lambda: self.find_all('[data-testid="fmu-list"] tbody tr'), "fmu-list is not loaded")
        before = {row.get_attribute("data-fmu-id") for row in self.fmu_rows()}
        self.testid("fmu-upload").send_keys(str(path))
        return self.wait(lambda: next(iter({row.get_attribute("data-fmu-id") for row in self.fmu_rows()} - before),
                                      None), f"{path.name} does not appear in fmu-list", timeout=60)

    def fmu_rows(self) -> list[Any]:
        return self.find_all('[data-testid="fmu-list"] [data-fmu-id]')

    def balance(self) -> int:
        """The credits shown on the billing page."""
        self.go("/billing")
        text = self.wait(lambda: re.sub(r"[^\d-]", "", self.shown("credits-balance").text),
                         "credits-balance shows no number")
        return int(text)

    def plot_is_drawn(self, name: str = "plot") -> bool:
        return bool(self.driver.execute_script(_PLOT_IS_DRAWN, self.testid(name)))

    def downloaded(self, suffix: str, timeout: float = WAIT_S) -> Path:
        """The file of ``suffix`` the browser saved, once complete."""
        def complete() -> Path | None:
            files = [p for p in self.download_dir.iterdir() if p.suffix == suffix]
            partial = [p for p in self.download_dir.iterdir() if p.suffix == ".crdownload"]
            return files[0] if len(files) == 1 and not partial and files[0].stat().st_size else None

        return self.wait(complete, f"no {suffix} file downloaded into {self.download_dir}", timeout)

    def resize(self, width: int, height: int) -> None:
        set_viewport(self.driver, (width, height))

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def overflows_horizontally(self) -> bool:
        return bool(self.driver.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth + 1"))

    # -- the browser's log -----------------------------------------------------------------

    def read_log(self) -> list[dict[str, Any]]:
        """Every entry so far (reading drains the browser's buffer, so they are kept here)."""
        self.log.extend(self.driver.get_log("browser"))
        return self.log

    def allow_severe(self, pattern: str) -> None:
        """A SEVERE entry matching ``pattern`` is expected (e.g. the 401 of a wrong key)."""
        self._allowed.append(re.compile(pattern))

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.read_log() if entry["level"] == "SEVERE"
                and not any(pattern.search(entry["message"]) for pattern in self._allowed)]
