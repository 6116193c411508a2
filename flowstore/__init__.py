"""flowstore: a durable workflow engine for Python asyncio, persisted through SQL.

`import flowstore` stays light: the store and its SQLAlchemy stack load when first used.
"""

from __future__ import annotations

from flowstore.errors import FlowstoreError

__all__ = ["FlowstoreError", "__version__"]

__version__ = "0.1.0"
