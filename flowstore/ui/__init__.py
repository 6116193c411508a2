"""`flowstore ui`: a web inspector of runs, read from the same tables as the CLI.

Server-rendered pages (Starlette and Jinja2, the `ui` extra) that escape every value read
from the database. Read-only unless started with an action token; see `app.py`.
"""

from __future__ import annotations

from flowstore.ui.app import create_app

__all__ = ["create_app"]
