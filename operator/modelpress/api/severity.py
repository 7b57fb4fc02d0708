"""How much a status reason asks of the people watching (`modelpress.api.reasons`)."""

from __future__ import annotations

from enum import Enum


class Severity(Enum):
    """What a reason asks of the people watching."""

    OK = "ok"
    """A good outcome, or a settled state that needs nothing."""
    ACTIVE = "active"
    """Work has started (a Job, a rollout): told by the status, not by an Event."""
    PENDING = "pending"
    """Waiting for something that will come, or work another condition already tells:
    a condition first seen with it is no news."""
    WARNING = "warning"
    """Something went wrong but may resolve on its own: a Warning Event, not a failure."""
    FAILURE = "failure"
    """Someone must act: a Warning Event and phase Failed."""
