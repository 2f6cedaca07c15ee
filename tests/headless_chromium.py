"""Drive Debian's headless Chromium over the DevTools protocol: load a page, wait until
Streamlit has finished rendering, read the page's text, take a screenshot.

Why not ``chromium --screenshot`` / ``--dump-dom``: their virtual-time budget does
not wait for Streamlit's websocket script run, so they capture the loading
skeleton (stack.md). Here we wait for the rendered elements themselves.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> str:
    """Poll ``url`` until it answers 200; return the body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


class Browser:
    """One headless Chromium with one page, controlled through the DevTools websocket."""

    def __init__(self, width: int = 1500, height: int = 1400):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("no chromium executable on PATH")
        self.profile = tempfile.mkdtemp(prefix="stbench-chromium-")
        port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/json/version", timeout=30)
        pages = json.loads(wait_http(f"http://127.0.0.1:{port}/json/list"))
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # skip events until our answer arrives
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, ready: str = '[data-testid="stDataFrame"]', timeout: float = 90.0) -> None:
        """Navigate and wait until ``ready`` is on the page and Streamlit says it is no longer running."""
        # mark the page being left: until the new document replaces it, the old one (with its own
        # rendered table) would pass the check below
        self.evaluate("window.__stbench_left = true")
        self.call("Page.navigate", url=url)
        check = (f"!window.__stbench_left && !!document.querySelector('{ready}') && "
                 "!document.querySelector('[data-testid=\"stStatusWidget\"]') && "
                 "!document.querySelector('[data-testid=\"stSkeleton\"]')")
        deadline = time.monotonic() + timeout
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {ready} did not render within {timeout:.0f} s")
            time.sleep(0.3)
        time.sleep(1.0)  # charts and the data grid's canvas draw after the elements appear

    def text(self) -> str:
        return self.evaluate("document.body.innerText") or ""

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
