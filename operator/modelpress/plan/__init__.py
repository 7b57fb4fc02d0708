"""The planner: pure functions from a spec and what is observed to what should exist.

No I/O and no kopf: the operator's handlers and local mode call these and do
the applying themselves.
"""
