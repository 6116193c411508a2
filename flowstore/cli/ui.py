"""`flowstore ui`: serve the web inspector (the `ui` extra) on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from flowstore.cli.db import existing_store, reading_store
from flowstore.errors import FlowstoreError

__all__ = ["add_commands"]

TOKEN_VARIABLE = "FLOWSTORE_UI_TOKEN"


def add_commands(commands: Any) -> None:
    """Register `ui`."""
    ui = commands.add_parser(
        "ui",
        help="serve a web inspector of the runs: read-only unless given an action token",
        description="Serve a web inspector of the runs (pip install 'flowstore[ui]'). It is "
        f"read-only unless ${TOKEN_VARIABLE} holds an action token: then whoever signs in "
        "with that token may cancel, resume and fork runs and send them signals.",
    )
    ui.add_argument(
        "--url",
        "--db",
        dest="url",
        help="database URL (default: $FLOWSTORE_DATABASE_URL or ./flowstore.db)",
    )
    ui.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: this machine)"
    )
    ui.add_argument("--port", type=int, default=8600, help="the port to listen on")
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from flowstore.ui import create_app
    except ImportError as error:
        raise FlowstoreError(
            f"the inspector needs the `ui` extra ({error.name} is missing): "
            "pip install 'flowstore[ui]'"
        ) from None
    token = os.environ.get(TOKEN_VARIABLE) or None
    settings = existing_store(args.url) if token else reading_store(args.url)
    mode = "actions need the token" if token else f"read-only (no ${TOKEN_VARIABLE})"
    print(f"flowstore ui on http://{args.host}:{args.port}/, {mode}", file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(settings, token=token), host=args.host, port=args.port, log_level="warning"
    )
    return 0
