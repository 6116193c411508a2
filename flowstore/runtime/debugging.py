"""Debug mode's log lines: each node's inputs when it starts, its output or error when it ends.

Lines go to the run's logger at DEBUG level, values as JSON cut at 2,000 characters, with the
run's secret fields replaced (`redaction.py`). An application that has not configured logging
still sees them: debug mode then gives the `flowstore.run` logger a handler to stderr (one
that configured logging decides where they go).
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from flowstore.runtime.calls import NodeJournal
from flowstore.runtime.redaction import Redactor

__all__ = ["DebugLog", "show_debug_lines"]

_RUN_LOGGER = "flowstore.run"


def show_debug_lines() -> None:
    """Make debug lines visible where logging is not configured: a handler to stderr on the
    `flowstore.run` logger, at DEBUG level. Logging configured by the application (a
    handler anywhere up the logger's tree) is left as it is."""
    logger = logging.getLogger(_RUN_LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logger.addHandler(handler)


class DebugLog:
    """Writes a run's debug lines (made only in debug mode)."""

    def __init__(self, log: logging.Logger, redactor: Redactor | None) -> None:
        self._log = log
        self._redactor = redactor
        show_debug_lines()

    def starts(self, node: str, key: str, attempt: int, arguments: Any) -> None:
        """A node execution starts with `arguments`."""
        self._log.debug(
            "node %s%s starts, attempt %d, inputs %s",
            node,
            f"[{key}]" if key else "",
            attempt,
            self._shown(arguments),
        )

    def succeeded(self, journal: NodeJournal, output: Any) -> None:
        """A node execution ended with `output` (as stored)."""
        self._ended(journal, f"output {self._shown(output)}")

    def failed(self, journal: NodeJournal, error: BaseException) -> None:
        """A node execution failed for good."""
        if self._redactor is None:
            self._ended(journal, "failed", error)
        else:  # the traceback, with the secrets out
            trace = self._redactor.text("".join(traceback.format_exception(error)))
            self._ended(journal, f"failed\n{trace}")

    def _ended(self, journal: NodeJournal, how: str, error: BaseException | None = None) -> None:
        self._log.debug(
            "node %s%s ended in %.1f ms after %d attempt(s): %s",
            journal.node,
            f"[{journal.key}]" if journal.key else "",
            journal.timing.took_ms(),
            journal.attempt,
            how,
            exc_info=error,
        )

    def _shown(self, value: Any) -> str:
        """A value as JSON for a line (stored values are JSON already), secrets replaced."""
        text = str(value) if isinstance(value, str) else json.dumps(value, default=repr)
        if self._redactor is not None:
            text = self._redactor.text(text)
        return text if len(text) <= 2000 else text[:2000] + "..."
