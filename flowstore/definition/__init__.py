"""Workflow definitions: the Python API, the YAML/JSON DSL, and the compiler to one graph.

This package is pure: no I/O beyond reading a definition file, no asyncio, no SQL.
"""
