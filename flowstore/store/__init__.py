"""The store: the only package that speaks SQL.

`open_store(url)` returns a `Store` over SQLite or PostgreSQL. Importing this package is
cheap; SQLAlchemy is imported when a store is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstore.store.protocol import Store
from flowstore.store.records import *  # noqa: F403
from flowstore.store.records import __all__ as _records_all

if TYPE_CHECKING:
    from flowstore.store.engine import StoreSettings
    from flowstore.store.serde import ValueLimits
    from flowstore.store.sql import SQLStore, open_store

__all__ = ["SQLStore", "Store", "StoreSettings", "ValueLimits", "open_store", *_records_all]

_LAZY = {
    "SQLStore": "flowstore.store.sql",
    "open_store": "flowstore.store.sql",
    "StoreSettings": "flowstore.store.engine",
    "ValueLimits": "flowstore.store.serde",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowstore.store' has no attribute {name!r}")
