"""The demo page in headless Chromium: type a prompt, watch the image arrive, chat about an uploaded image,
make a clip in windows and extend an uploaded one.

Chromium is driven through chromedriver's W3C WebDriver HTTP API with plain httpx calls (no Selenium).
Everything stays on 127.0.0.1; the browser starts with a fresh profile and no background networking.
Set EMU3_SCREENSHOT_DIR to keep the screenshots; otherwise they go to the test's tmp_path.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import SERVE_EXTRA

httpx = pytest.importorskip("httpx", reason=SERVE_EXTRA)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,760",
]
GIF_URI = "data:image/gif;base64,"


def finished(status_id: str) -> str:
    """A script returning the status line `status_id` once it reads "done ..." or "error ...", else null."""
    return f"const s = document.getElementById('{status_id}').textContent; return /^(done|error)/.test(s) ? s : null"


LAST_ANSWER = (
    "const m = document.querySelectorAll('#log .msg');"
    "return document.getElementById('ask').disabled ? null : m[m.length - 1].textContent"
)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
)


class Browser:
    """A minimal WebDriver client: one session, the handful of commands the test needs."""

    def __init__(self, driver_url: str, profile: Path) -> None:
        self.http = httpx.Client(base_url=driver_url, timeout=60)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        r = self.http.request(method, path, json=body)
        value = r.json()["value"]
        if r.status_code != 200:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        self.cmd("POST", f"/element/{element}/clear", {})
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def wait_for(self, script: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not (value := self.js(script)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {script}")
            time.sleep(0.1)
        return value

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.http.close()


@pytest.fixture
def browser(tmp_path):
    port = _free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_driver(f"http://127.0.0.1:{port}")
        b = Browser(f"http://127.0.0.1:{port}", tmp_path / "profile")
        try:
            yield b
        finally:
            b.close()
    finally:
        driver.terminate()
        driver.wait(10)


def test_page_generates_an_image_and_chats_about_an_upload(browser, open_url, tmp_path):
    out = Path(os.environ.get("EMU3_SCREENSHOT_DIR", tmp_path))
    browser.cmd("POST", "/url", {"url": f"{open_url}/"})
    assert browser.js("return document.title") == "Emu3"
    browser.type("#prompt", "a green square")
    browser.type("#seed", "4")
    browser.click("#draw")
    status = browser.wait_for(finished("status"))
    assert status.startswith("done"), status
    src = browser.js("return document.getElementById('canvas').src")
    assert src.startswith("data:image/png;base64,")
    assert browser.js("return document.getElementById('bar').value") == 1
    shot = browser.screenshot(out / "serve_page_image.png")

    upload = tmp_path / "upload.png"
    Image.fromarray(np.full((32, 32, 3), (200, 30, 30), dtype=np.uint8)).save(upload)
    browser.cmd("POST", f"/element/{browser.find('#file')}/value", {"text": str(upload)})
    browser.wait_for("return document.getElementById('thumb').style.display === 'inline'")
    browser.type("#question", "What colour is it?")
    browser.click("#ask")
    answer = browser.wait_for(LAST_ANSWER)
    assert answer.startswith("emu3: "), answer
    browser.screenshot(out / "serve_page_chat.png")
    darkest, brightest = Image.open(shot).convert("L").getextrema()
    assert Image.open(shot).size[0] >= 800 and brightest - darkest > 100  # a rendered page, not a blank


def test_page_streams_a_clip_in_windows_then_extends_an_uploaded_one(browser, open_url, pipe, tmp_path):
    from emu3.serve import media

    out = Path(os.environ.get("EMU3_SCREENSHOT_DIR", tmp_path))
    browser.cmd("POST", "/url", {"url": f"{open_url}/"})
    body = {"prompt": "a ball", "frames": 8, "size": "32x32", "seed": 4}  # more than one window holds
    for css, value in (("#vprompt", "a ball"), ("#vframes", "8"), ("#vsize", "32x32"), ("#vseed", "4")):
        browser.type(css, value)
    browser.click("#vdraw")
    status = browser.wait_for(finished("vstatus"), timeout=60)
    t = pipe.vq.cfg.temporal_downsample_factor
    assert status == f"done ({8 * t} frames)", status
    assert browser.js("return document.getElementById('vbar').value") == 1
    assert int(browser.js("return document.getElementById('clip').dataset.partials")) >= 1  # clips between windows
    gif = _shown_gif(browser)
    shown = media.read_gif(gif)
    plain = httpx.post(f"{open_url}/v1/videos/generations", json=body, timeout=120).json()["data"][0]["b64_json"]
    np.testing.assert_array_equal(shown, media.read_gif(base64.b64decode(plain)))  # the page shows the API's clip
    browser.screenshot(out / "serve_page_video.png")

    given = tmp_path / "given.gif"
    given.write_bytes(gif)
    browser.cmd("POST", f"/element/{browser.find('#vfile')}/value", {"text": str(given)})
    browser.wait_for("return document.getElementById('vthumb').style.display === 'inline'")
    browser.type("#vframes", "1")
    browser.click("#vdraw")
    status = browser.wait_for(finished("vstatus"), timeout=60)
    assert status == f"done ({9 * t} frames)", status
    np.testing.assert_array_equal(media.read_gif(_shown_gif(browser))[: len(shown)], shown)


def _shown_gif(browser: Browser) -> bytes:
    """The GIF the page's clip element shows (a data: URI)."""
    src = browser.js("return document.getElementById('clip').src")
    assert src.startswith(GIF_URI), src[:40]
    return base64.b64decode(src[len(GIF_URI) :])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_driver(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/status", timeout=1).json()["value"]["ready"]:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("chromedriver did not start")
