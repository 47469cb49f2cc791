"""The published site as a student opens it: every page in headless Chromium (Debian's chromium
and chromium-driver, driven by selenium), served on 127.0.0.1.

Per page: no console error (except for the external CDNs, which a machine without internet
cannot reach), every image loads, every internal link resolves, every explorer (a range slider)
changes what it shows when moved, nothing scrolls sideways at phone width (400 px). Screenshots
at 1400 px and 400 px go to ``_build/screenshots/`` for a person to look at.

Skipped when Chromium or its driver is missing, except under CI (``CI`` set), where ``.ci/run``
installs them and a skip would hide a broken site.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from fplab.paths import REPO_ROOT

HTML = REPO_ROOT / "_build" / "html"
SHOTS = REPO_ROOT / "_build" / "screenshots"
EXTERNAL = ("unpkg.com", "cdn.jsdelivr.net", "bootstrapcdn.com", "mybinder.org", "colab.research.google.com",
            "github.com", "fonts.googleapis.com", "cdnjs.cloudflare.com")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.book


def _need_browser():
    if CHROMIUM and DRIVER:
        return
    message = "Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def site():
    """The built site, served on 127.0.0.1 (built from the committed notebooks if missing)."""
    if not (HTML / "index.html").exists():
        subprocess.run([sys.executable, "-m", "fplab", "book", "--no-execute"], cwd=REPO_ROOT,
                       check=True)
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the browser moved on to the next page
            pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def pages() -> list[str]:
    return sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html")
                  if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts) \
        if HTML.exists() else []


def _external(url: str) -> bool:
    return any(host in url for host in EXTERNAL)


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not _external(e["message"])]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


MAX_PAGE_BYTES = 3 * 2**20


def _page_bytes(driver, page: str, site: str) -> int:
    """The page's HTML and the local images it shows, in bytes (what a phone downloads)."""
    srcs = driver.execute_script("return Array.from(document.images).map(i => i.src)")
    files = {HTML / page} | {HTML / urlparse(s).path.lstrip("/") for s in srcs
                             if s.startswith(site)}
    return sum(f.stat().st_size for f in files if f.is_file())


def _load(driver, url: str, width: int, height: int = 900):
    driver.set_window_size(width, height)
    driver.get(url)
    driver.execute_script("return document.readyState")


def test_site_pages_in_a_browser(site, browser):
    if not pages():
        pytest.fail("the site has no pages")
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems, checked_links = [], set()
    for page in pages():
        url = urljoin(site, page)
        name = page.replace("/", "_").removesuffix(".html")
        _load(browser, url, 1400)
        browser.get_log("browser")  # discard what an earlier page left
        browser.refresh()
        problems += [f"{page}: console error: {m}" for m in _console_errors(browser)]
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.src)")
        problems += [f"{page}: image does not load: {src}" for src in broken if not _external(src)]
        weight = _page_bytes(browser, page, site)
        if weight > MAX_PAGE_BYTES:
            problems.append(f"{page}: {weight / 2**20:.1f} MB with its images (limit 3 MB)")
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        for link in links:
            target = urldefrag(link).url
            if urlparse(target).netloc == urlparse(site).netloc and target not in checked_links:
                checked_links.add(target)
                if _status(target) != 200:
                    problems.append(f"{page}: broken internal link {target}")
        problems += _explorers_respond(browser, page)
        browser.save_screenshot(str(SHOTS / f"{name}-1400.png"))
        _load(browser, url, 400)
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if wide > 1:
            problems.append(f"{page}: scrolls sideways by {wide} px at 400 px width")
        browser.save_screenshot(str(SHOTS / f"{name}-400.png"))
    assert not problems, "\n".join(problems)


def _explorers_respond(driver, page: str) -> list[str]:
    """Move every range slider on the page one step; what its figure shows must change."""
    problems = []
    sliders = driver.find_elements("css selector", "input[type=range]")
    for i, slider in enumerate(sliders):
        shown = _explorer_state(driver, slider)
        driver.execute_script(
            "const s = arguments[0]; const v = Number(s.value);"
            "s.value = v < Number(s.max) ? v + Number(s.step || 1) : v - Number(s.step || 1);"
            "s.dispatchEvent(new Event('input', {bubbles: true}));"
            "s.dispatchEvent(new Event('change', {bubbles: true}));", slider)
        if _explorer_state(driver, slider) == shown:
            problems.append(f"{page}: explorer {i} does not respond to its slider")
    return problems


def _explorer_state(driver, slider) -> str:
    """What the explorer around ``slider`` shows: the sources of the images in its nearest
    ancestor that has one (an explorer's frames are images; icons are inline SVG), and its text."""
    return driver.execute_script(
        "let box = arguments[0]; for (let k = 0; k < 6 && box.parentElement; k++) {"
        "  box = box.parentElement; if (box.querySelector('img')) break; }"
        "return Array.from(box.querySelectorAll('img')).map(i => i.src).join('|')"
        "  + box.innerText;", slider)
