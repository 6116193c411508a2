"""Export a run's spans to OpenTelemetry, when the `otel` extra is installed.

The spans stored in `flowstore_spans` are replayed through an OpenTelemetry tracer when the run
ends: the run's span first, its node spans as children, attempt spans under their node, each
with the start and end times measured during the run. The tracer is the one given to the
`Engine`, else the global tracer provider's once one is configured (nothing is exported
before). The spans of a run whose process dies before it ends are in SQL only.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowstore.logs import engine_logger
from flowstore.store.records import Span

__all__ = ["available", "default_tracer", "export"]

log = engine_logger("flowstore.otel")


def available() -> bool:
    """Whether the OpenTelemetry API is installed (`pip install 'flowstore[otel]'`)."""
    return importlib.util.find_spec("opentelemetry") is not None


def default_tracer() -> Any:
    """The global provider's tracer for flowstore; None without OpenTelemetry, or while no
    tracer provider is configured (spans would go nowhere).

    Only code that imported OpenTelemetry can have configured a provider, so while nothing
    has, OpenTelemetry is not imported here (it would cost a run about 10 ms).
    """
    if "opentelemetry" not in sys.modules or not available():
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("flowstore")


def export(tracer: Any, spans: Sequence[Span]) -> None:
    """Replay `spans` (one run's, parents before or after children) through `tracer`."""
    from opentelemetry import trace

    children: dict[str | None, list[Span]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)

    def replay(span: Span, context: Any) -> None:
        attributes: dict[str, str | int] = {
            "flowstore.run_id": span.run_id or "",
            "flowstore.node": span.node or "",
            "flowstore.key": span.key,
            "flowstore.status": span.status or "",
        }
        if span.attempt is not None:
            attributes["flowstore.attempt"] = span.attempt
        started = tracer.start_span(
            span.name, context=context, start_time=_ns(span.started_at), attributes=attributes
        )
        if span.status not in (None, "succeeded"):
            started.set_status(trace.Status(trace.StatusCode.ERROR, span.status))
        inner = trace.set_span_in_context(started)
        for child in sorted(children.get(span.span_id, []), key=_start):
            replay(child, inner)
        started.end(end_time=_ns(span.ended_at or span.started_at))

    try:
        for root in sorted(children.get(None, []), key=_start):
            replay(root, None)
    except Exception:  # exporting must never break a run
        log.exception("could not export spans to OpenTelemetry")


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _start(span: Span) -> datetime:
    return span.started_at
