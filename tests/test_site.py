"""The rendered book as a reader sees it: every page opened in headless Chromium, network off.

On every page of the table of contents: formulas are typeset by the offline MathJax, every image
loads, solutions are folded away, and the browser console shows no errors beyond the known
harmless ones below. Every internal link and anchor of the site resolves. A full-page screenshot
of every page is saved next to the built site (``<build>/screenshots/``) for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup
from conftest import toc_pages

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

#: Console errors every Jupyter Book 1.x page shows, which do not affect what a reader sees.
KNOWN_HARMLESS = (
    # sphinx-book-theme declares the Thebe launcher's URL in two script tags; the second one
    # throws, and the launcher (unused here: the book has no Thebe kernel) still loads.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme reads the light/dark choice from localStorage; a fresh browser profile
    # has none, it logs this through console.error and falls back to "auto".
    "Got invalid theme mode",
)

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--proxy-server=http://127.0.0.1:9",  # network off: any http(s) request fails
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def typeset_formulas(driver) -> int:
    """Wait for MathJax to finish (if the page loads it) and count the typeset formulas."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (!window.MathJax || !MathJax.startup) { done(-1); return; }"
        "MathJax.startup.promise.then("
        "  () => done(document.querySelectorAll('mjx-container').length));"
    )


def save_screenshot(driver, path: Path) -> None:
    """A screenshot of the whole page, not only the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height, 800), 20000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


@needs_browser
@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline(built_book, browser, page):
    browser.get_log("browser")  # drop what earlier pages left
    browser.get((built_book / page).as_uri())
    formulas = typeset_formulas(browser)
    math = browser.execute_script("return document.querySelectorAll('.math').length")
    if math:
        assert formulas >= math, f"{page}: {formulas} formulas typeset of {math}"

    broken = browser.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)"
    )
    assert broken == [], f"{page}: images that do not load: {broken}"

    unfolded = browser.execute_script(
        "return [...document.querySelectorAll('.solution.dropdown')].filter(d => "
        "[...d.children].some(c => !c.classList.contains('admonition-title') && "
        "getComputedStyle(c).visibility !== 'hidden')).length"
    )
    assert unfolded == 0, f"{page}: {unfolded} solutions are open when the page loads"

    errors = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and not any(k in entry["message"] for k in KNOWN_HARMLESS)
    ]
    assert errors == [], f"{page}: console errors {errors}"
    save_screenshot(browser, built_book.parent / "screenshots" / page.replace(".html", ".png"))


def site_pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.parts))


def test_every_internal_link_and_anchor_resolves(built_book):
    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(), "html.parser")
            ids[path] = {tag["id"] for tag in soup.find_all(id=True)}
        return ids[path]

    broken = []
    for page in site_pages(built_book):
        soup = BeautifulSoup(page.read_text(), "html.parser")
        for link in soup.find_all("a", href=True):
            parts = urlsplit(link["href"])
            if parts.scheme or parts.netloc or link["href"].startswith("mailto:"):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.name}: {link['href']} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in anchors(target):
                    broken.append(f"{page.name}: {link['href']} (no such anchor)")
    assert broken == [], "\n".join(broken[:30])
    assert len(site_pages(built_book)) >= len(toc_pages())
