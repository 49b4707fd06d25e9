"""Waiting on files another process writes: a test host's growing error log (`ErrorLogFile`,
mixed into CgiHost and IsapiHost) and an app's marker file (`wait_for_file`).

Both poll with a short interval, bounded by a deadline that only limits a failure.
"""

from __future__ import annotations

import time
from pathlib import Path


def wait_for_file(path, timeout=20.0, predicate=None):
    """Observe a side effect of the app (a marker file). Polls; bounded by `timeout`."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    content = None
    while time.monotonic() < deadline:
        if path.exists():
            content = path.read_text()
            if predicate is None or predicate(content):
                return content
        time.sleep(0.02)
    raise AssertionError(f"marker {path} not as expected within {timeout}s; content={content!r}")


class ErrorLogFile:
    """A log file that grows while a test host runs (mixed into CgiHost and IsapiHost): the
    host sets `log_path`; `log_label` names the log in failures, `log_context()` adds what
    else helps to read one."""

    log_label = "error log"
    log_path: Path

    def log_context(self) -> str:
        return ""

    def error_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_mark(self) -> int:
        """Current size of the log; pass to error_log_since()/wait_log()."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def error_log_since(self, mark: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, since: int = 0, timeout: float = 15.0) -> str:
        """Waits until `needle` appears in the log after `since` (hosts write it
        asynchronously to the response); returns that text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.error_log_since(since)
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the {self.log_label} within {timeout}s;"
                                     f" log since mark:\n{text[-4000:]}{self.log_context()}")
            time.sleep(0.02)  # poll interval of a bounded wait on the file, not a sync sleep
