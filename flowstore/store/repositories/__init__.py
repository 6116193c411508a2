"""SQL grouped by what it stores: one module per kind of record.

Each function takes an open `AsyncConnection` inside the transaction the caller chose, and
returns domain records. `flowstore.store.sql.SQLStore` decides transactions and locking.
"""
