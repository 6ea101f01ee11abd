"""The planner app in a real browser: headless Chromium (Debian's package) driven by playwright.

Starts ``xrdflow app`` on a free port, opens it, changes the energy and the reflection and
reads the 2theta and transmission text change, opens the 3D view (a WebGL canvas that is not
blank in a screenshot), downloads the report PDF and renders it with pdftoppm. It prints the
time from an input change to the updated page (the median of 20 changes): a measurement,
not an assertion.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the app extra is not installed (pip install -e '.[app]')")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (in the test extra)")

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed "
                       "(Debian: apt-get install chromium; .ci/run installs it)"),
]

TWO_THETA = re.compile(r"2θ\s*=\s*([0-9.]+)\s*°")
TRANSMISSION = re.compile(r"Transmission\s*=\s*([0-9.eE+-]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xrdflow.cli", "app", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"xrdflow app did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(app_url):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(app_url)
        _wait_text(pg, TWO_THETA)
        yield pg
        context.close()
        browser.close()


HEADLINE_JS = """() => { const e = document.querySelector('.st-key-headline');
    const m = e && /2θ\\s*=\\s*([0-9.]+)\\s*°/.exec(e.innerText); return m ? m[1] : null; }"""
SCENE_JS = """() => { const e = document.querySelector('.st-key-scene_3d .gtitle');
    const m = e && /2θ\\s*([0-9.]+)°/.exec(e.textContent); return m ? m[1] : null; }"""


def _body(pg) -> str:
    return pg.inner_text("body")


def _wait_js(pg, getter: str, not_equal: str | None = None, timeout_ms: float = 60_000) -> str:
    """Wait in the page (polling every 20 ms) until ``getter`` gives a value != ``not_equal``."""
    pg.wait_for_function(f"(old) => {{ const v = ({getter})(); return v !== null && v !== old; }}",
                         arg=not_equal, polling=20, timeout=timeout_ms)
    return pg.evaluate(getter)


def _wait_text(pg, pattern: re.Pattern, *, not_equal: str | None = None,
               timeout: float = 60.0) -> str:
    """The first match of ``pattern`` in the page once it differs from ``not_equal``."""
    deadline = time.monotonic() + timeout
    while True:
        m = pattern.search(_body(pg))
        if m and (not_equal is None or m.group(1) != not_equal):
            return m.group(1)
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern.pattern} did not appear/change in {timeout} s; page:\n"
                                 f"{_body(pg)[:3000]}")
        time.sleep(0.1)


def _wait_scene_shows(pg, two_theta: str, timeout_ms: float = 60_000) -> str:
    """Wait until the 3D view's title (2theta to 2 decimals) shows ``two_theta``: the view
    of this very input, not of an earlier one still being redrawn."""
    pg.wait_for_function(f"(want) => {{ const v = ({SCENE_JS})(); "
                         f"return v !== null && Math.abs(parseFloat(v) - want) < 0.006; }}",
                         arg=float(two_theta), polling=20, timeout=timeout_ms)
    return pg.evaluate(SCENE_JS)


def _set_energy(pg, kev: float) -> None:
    box = pg.get_by_label("Energy (keV)")
    box.fill(f"{kev:g}")
    box.press("Enter")


def test_energy_and_reflection_change_the_numbers_and_latency(page):
    before_tt = _wait_text(page, TWO_THETA)
    before_t = _wait_text(page, TRANSMISSION)
    _set_energy(page, 25.0)
    after_tt = _wait_text(page, TWO_THETA, not_equal=before_tt)
    after_t = _wait_text(page, TRANSMISSION, not_equal=before_t)
    assert float(after_tt) < float(before_tt)  # higher energy, smaller Bragg angle
    assert float(after_t) > float(before_t)  # and a more transparent sample

    # the reflection: pick another entry of the table of reachable ones
    select = page.get_by_label("Reflection")
    select.click()
    options = page.get_by_role("option")
    assert options.count() >= 2
    current = _wait_text(page, TWO_THETA)
    options.nth(1).click()
    changed = _wait_text(page, TWO_THETA, not_equal=current)
    assert changed != current

    # latency, 20 changes of the energy: to the new numbers on the page, and to the 3D view
    # redrawn (its title carries 2theta)
    numbers, view = [], []
    value = _wait_js(page, HEADLINE_JS)
    _wait_scene_shows(page, value)  # the view of the reflection change is drawn
    for i in range(20):
        kev = 18.0 + 0.37 * (i + 1)
        t0 = time.perf_counter()
        _set_energy(page, kev)
        value = _wait_js(page, HEADLINE_JS, value)
        numbers.append(time.perf_counter() - t0)
        _wait_scene_shows(page, value)  # the 3D view of this energy
        view.append(time.perf_counter() - t0)
    print(f"\nxrdflow app, input change -> updated page (median of 20): numbers "
          f"{statistics.median(numbers):.3f} s (max {max(numbers):.3f}); 3D view redrawn "
          f"{statistics.median(view):.3f} s (max {max(view):.3f})")


def test_3d_view_draws_on_a_webgl_canvas(page, tmp_path):
    tab = page.get_by_text("3D view", exact=True)
    if tab.count():
        tab.first.click()
    plot = page.locator(".js-plotly-plot").filter(has=page.locator("canvas")).first
    plot.wait_for(state="visible")
    page.wait_for_timeout(1500)  # WebGL draws after the element appears
    assert plot.locator("canvas").count() >= 1
    shot = tmp_path / "view3d.png"
    plot.screenshot(path=str(shot))
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[0] > 200 and img.shape[1] > 200
    # not blank: many distinct colours (atoms, beams, sample), not one background colour
    colours = {tuple(p) for p in img[::4, ::4].reshape(-1, 3).astype(int)}
    assert img.std() > 8 and len(colours) > 50, (img.std(), len(colours))


def test_report_pdf_downloads_with_the_3d_view(page, tmp_path):
    button = page.get_by_role("button", name=re.compile(r"Report \(PDF\)"))
    if button.count() == 0:  # built on request
        page.get_by_role("button", name=re.compile("Prepare report")).click()
        button = page.get_by_role("button", name=re.compile(r"Report \(PDF\)"))
    button.first.wait_for(state="visible")
    with page.expect_download() as info:
        button.first.click()
    path = Path(info.value.path())
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: the PDF was not rendered")
    out = tmp_path / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(path), str(out)],
                   check=True)
    from PIL import Image

    img = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("RGB"), float)
    h, w, _ = img.shape
    assert h > w  # portrait A4
    view = img[int(0.06 * h):int(0.44 * h), int(0.47 * w):]  # the 3D view's place on the page
    saturation = view.max(axis=2) - view.min(axis=2)
    assert (saturation > 60).mean() > 0.01  # coloured atoms, beams, sample: not an empty box
