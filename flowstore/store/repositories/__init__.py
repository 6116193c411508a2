"""SQL grouped by what it stores: one module per kind of record.

Each function is plain synchronous SQLAlchemy Core over a `Connection` inside the transaction
the caller chose (see `flowstore.store.sql` for how it runs without blocking the event loop), and
returns domain records. `flowstore.store.sql.SQLStore` decides transactions and locking.
"""
