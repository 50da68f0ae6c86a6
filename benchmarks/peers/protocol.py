"""The line protocol between ``compare.py`` and the two training workers (ours and RecBole's).

Each worker trains one epoch (and validates) per ``go`` and then waits, so the parent can
alternate the two sides epoch by epoch and both see the same machine load. Messages are JSON
lines on a private copy of the worker's stdout; the worker's own stdout is pointed at stderr so
that library prints and logs cannot corrupt the protocol. Standard library only: both virtual
environments import it.

Parent -> worker: ``{"cmd": "go"}`` (train one more epoch), ``{"cmd": "stop"}`` (end training
now and keep the best epoch), ``{"cmd": "test"}``, ``{"cmd": "quit"}``, plus worker-specific
commands. Worker -> parent: ``{"ready": ...}`` once, then one reply per command.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, TextIO


class Channel:
    """The worker's end: read commands from stdin, write replies to the saved stdout."""

    def __init__(self) -> None:
        self._out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    def receive(self) -> dict[str, Any]:
        line = sys.stdin.readline()
        if not line:
            return {"cmd": "quit"}
        message = json.loads(line)
        if not isinstance(message, dict) or "cmd" not in message:
            raise ValueError(f"protocol: expected a JSON object with a 'cmd' key, got {line!r}")
        return message


def peak_rss_gib() -> float:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
