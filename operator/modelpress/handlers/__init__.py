"""The operator's kopf side: thin handlers that read the world, call the planner
(`modelpress.plan`), apply the difference, and report status and Events."""

from __future__ import annotations

from modelpress.handlers.run import run_operator
from modelpress.handlers.state import OperatorState

__all__ = ["OperatorState", "run_operator"]
