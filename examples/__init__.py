"""Example workflows, runnable with `flowstore run examples.<module>:flow`."""
