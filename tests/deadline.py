"""Run a call in a daemon thread with a deadline: a hang fails the test instead of
blocking the run (the suite's 300 s guard would end the whole run)."""

from __future__ import annotations

import threading
from typing import Any, Callable


def bounded(fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kw: Any) -> Any:
    """``fn(*args, **kw)``'s result (its exception re-raised in the caller's thread); an
    AssertionError if it does not return within ``timeout`` seconds (default 60)."""
    box: dict = {}

    def work() -> None:
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s (hang)"
    if "error" in box:
        raise box["error"]
    return box["value"]
