"""The loggers flowstore writes to, and the redaction every line of theirs goes through.

While a run with secret fields executes in this process, its redactor is registered here
(`redacting`), and every line written to a flowstore logger (message, arguments and
traceback) has those secrets replaced before any handler sees it: an error that quotes an API
key is logged as `api_key=[redacted]`. Lines that applications write to their own loggers, or
that node code writes to `NodeContext.logger`, are theirs.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Redacts", "engine_logger", "redacting"]


class Redacts(Protocol):
    """Something that takes secrets out of a text (`runtime.redaction.Redactor`)."""

    def text(self, text: str) -> str:
        """`text` without the secrets."""
        ...


_active: weakref.WeakSet[Redacts] = weakref.WeakSet()


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(_active)
        if not redactors:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for redactor in redactors:
            message = redactor.text(message)
            if record.exc_text:
                record.exc_text = redactor.text(record.exc_text)
        record.msg, record.args = message, ()
        record.exc_info = None if record.exc_text else record.exc_info
        return True


_FILTER = _Redacting()


def engine_logger(name: str) -> logging.Logger:
    """The logger `name`, its lines redacted while runs with secrets execute here."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


@contextlib.contextmanager
def redacting(redactor: Redacts | None) -> Iterator[None]:
    """Redact the lines of every flowstore logger with `redactor` while inside."""
    if redactor is None:
        yield
        return
    _active.add(redactor)
    try:
        yield
    finally:
        _active.discard(redactor)
