"""The dashboard in headless Chromium: load it with the token in the URL fragment, press
train-now in a collect-mode run that waits for it, see the state change, screenshot.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ending in NUL on fds 3/4), which needs no extra package.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from heidi_engine.server.launcher import SERVER_KINDS, ServerProcess, find_heidid

pytestmark = [pytest.mark.browser, pytest.mark.daemon]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ENGINE_PREFIXES = ("HEIDI_", "OUT_DIR", "PIPELINE_MODE", "RUN_UNIT_TESTS", "ROUNDS", "RUN_ID")


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, profile_dir: Path) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Above 4, so placing them on fds 3 and 4 in the child cannot clobber one another.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 5)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 5)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def place_fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
             "--disable-gpu", "--no-first-run", "--window-size=1200,900",
             f"--user-data-dir={profile_dir}", "about:blank"],
            # Python's descriptors are not inheritable (PEP 446), so with close_fds off
            # the browser gets only stdio and the two dup2'd pipe ends.
            preexec_fn=place_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_in)
        os.close(child_out)
        self.writer = os.fdopen(to_browser_w, "wb")
        self.reader = os.fdopen(from_browser_r, "rb")
        self._next_id = 0
        self._buffer = b""
        self.session: str | None = None

    def call(self, method: str, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        self.writer.write(json.dumps(message).encode() + b"\0")
        self.writer.flush()
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self.reader.fileno(), 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the debugging pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.writer.close()
        self.reader.close()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_dashboard_train_now_changes_the_state(kind, tmp_path, need_native):
    if CHROMIUM is None:
        need_native("chromium")
    if kind == "heidid" and find_heidid() is None:
        need_native("heidid")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENGINE_PREFIXES)}
    env.update(HEIDI_FSYNC="0", HEIDI_PYTHON=sys.executable, HEIDI_MOCK_SUBPROCESSES="1",
               PIPELINE_MODE="collect", ROUNDS="2", HEIDI_BACKEND="python")
    server = ServerProcess(kind, tmp_path / "out", env=env)
    browser = DevTools(tmp_path / "profile")
    try:
        browser.open(f"{server.base_url}/#token={server.token}")
        browser.wait_for("document.getElementById('state').dataset.state === 'IDLE' && "
                         "!document.getElementById('btn-train-now').disabled")
        assert browser.evaluate("document.getElementById('round').textContent") == "1 / 2"
        assert "waiting for train-now" in browser.evaluate("document.getElementById('mode').textContent")
        browser.click("#btn-train-now")
        browser.wait_for("document.getElementById('action-result').textContent === 'train-now accepted'")
        # The run trains, evaluates and collects round 2, then waits again.
        browser.wait_for("document.getElementById('round').textContent === '2 / 2' && "
                         "document.getElementById('state').dataset.state === 'IDLE'")
        events = browser.wait_for("[...document.querySelectorAll('#events li')]"
                                  ".map(li => li.textContent).join('\\n')")
        assert "train_now_trigger" in events
        png = browser.screenshot(tmp_path / f"dashboard_{kind}.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    finally:
        browser.close()
        server.stop()
    journal = (tmp_path / "out" / "journal" / "events.jsonl").read_text()
    assert '"event_type":"train_now_trigger"' in journal
