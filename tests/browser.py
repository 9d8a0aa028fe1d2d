"""Drive a headless Chromium over the DevTools protocol (``--remote-debugging-pipe``).

:func:`load_page` opens a local file, waits for its load event, records every console message,
uncaught exception, error log entry and requested URL, and takes a PNG screenshot. Tests use it to
check that a report renders, has no console errors, and fetches nothing from the network.

The protocol runs over two pipes handed to Chromium as file descriptors 3 (commands in) and 4
(replies and events out); each message is one JSON object followed by a NUL byte.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM`` if set, else the first of the usual names on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """Chromium did not start, answer or finish in time."""


@dataclass
class PageLoad:
    """What happened while a page loaded."""

    screenshot_png: bytes = b""
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and error log entries, as text."""
        console = [
            f"console.{kind}: {text}" for kind, text in self.console if kind in ("error", "assert")
        ]
        return console + [f"exception: {e}" for e in self.exceptions] + self.log_errors


class _Pipe:
    """One DevTools connection over Chromium's pipes."""

    def __init__(self, process: subprocess.Popen[bytes], to_browser: int, from_browser: int):
        self.process = process
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, **extra: Any) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}, **extra}
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed the pipe (exit {self.process.poll()})")
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, deadline: float, **extra: Any
    ) -> dict[str, Any]:
        """Send a command and wait for its reply; events that arrive meanwhile are kept."""
        wanted = self.send(method, params, **extra)
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for_event(self, method: str, *, deadline: float) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method:
                return event
        while True:
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                message = self._read_message(deadline)
                if "method" in message:
                    self.events.append(message)
        except BrowserError:
            if self.process.poll() is not None:
                raise


def _console_text(params: dict[str, Any]) -> str:
    parts = []
    for argument in params.get("args", []):
        parts.append(str(argument.get("value", argument.get("description", ""))))
    return " ".join(parts)


def _exception_text(params: dict[str, Any]) -> str:
    details = params.get("exceptionDetails", {})
    description = details.get("exception", {}).get("description")
    return description or details.get("text", "exception")


def load_page(
    path: Path,
    *,
    chromium: str | None = None,
    width: int = 1280,
    height: int = 2000,
    timeout: float = 20.0,
    settle_seconds: float = 0.3,
) -> PageLoad:
    """Open ``path`` in headless Chromium, wait for ``load``, and report what happened.

    Raises :class:`BrowserError` when Chromium is missing, fails to start, or takes longer than
    ``timeout`` seconds in all.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError("no chromium binary found (set $CHROMIUM or install chromium)")
    deadline = time.monotonic() + timeout
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def hand_over_pipes() -> None:
        # In the child, before exec: the pipes become fds 3 and 4. Copy them above 10 first so
        # that neither dup2 can overwrite the other pipe.
        commands_copy = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        replies_copy = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
        os.dup2(commands_copy, 3)
        os.dup2(replies_copy, 4)

    with (
        tempfile.TemporaryDirectory(prefix="leakcheck-chromium-") as profile,
        tempfile.TemporaryFile() as log,
    ):
        process = subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--mute-audio",
                "--hide-scrollbars", "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=hand_over_pipes,
            close_fds=False,  # Python's own descriptors are close-on-exec anyway (PEP 446)
        )  # fmt: skip
        os.close(commands_read)
        os.close(replies_write)
        pipe = _Pipe(process, commands_write, replies_read)
        try:
            return _drive(pipe, path, width, height, deadline, settle_seconds)
        except BrowserError as error:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise BrowserError(f"{error}; chromium's stderr ends with:\n{tail}") from None
        finally:
            _stop(pipe)


def _drive(
    pipe: _Pipe, path: Path, width: int, height: int, deadline: float, settle_seconds: float
) -> PageLoad:
    target = pipe.call("Target.createTarget", {"url": "about:blank"}, deadline=deadline)
    attached = pipe.call(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
        deadline=deadline,
    )  # fmt: skip
    session = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", deadline=deadline, sessionId=session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        deadline=deadline, sessionId=session,
    )  # fmt: skip
    pipe.events.clear()
    pipe.call(
        "Page.navigate", {"url": Path(path).resolve().as_uri()}, deadline=deadline,
        sessionId=session,
    )  # fmt: skip
    pipe.wait_for_event("Page.loadEventFired", deadline=deadline)
    pipe.drain(settle_seconds)
    shot = pipe.call(
        "Page.captureScreenshot", {"format": "png"}, deadline=deadline, sessionId=session
    )
    pipe.drain(0.05)
    result = PageLoad(screenshot_png=base64.b64decode(shot["data"]))
    for event in pipe.events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            result.console.append((params.get("type", ""), _console_text(params)))
        elif method == "Runtime.exceptionThrown":
            result.exceptions.append(_exception_text(params))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                result.log_errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            result.requested_urls.append(params.get("request", {}).get("url", ""))
    return result


def _stop(pipe: _Pipe) -> None:
    with contextlib.suppress(OSError):
        pipe.send("Browser.close")
    try:
        pipe.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pipe.process.kill()
        pipe.process.wait(timeout=5)
    for fd in (pipe.to_browser, pipe.from_browser):
        with contextlib.suppress(OSError):
            os.close(fd)
