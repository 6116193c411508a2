"""Executing compiled graphs durably: the engine, the executor, contexts and run records.

The runtime talks to the database only through the `Store` protocol; it writes no SQL.
"""
