"""Source errors. Messages never contain the Hugging Face token."""

from __future__ import annotations


class SourceError(Exception):
    """A base model could not be resolved or imported.

    `permanent`: trying again cannot help (the repository does not exist or is gated, a
    revision is unknown): the Job fails at once instead of retrying.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SourceSpecError(SourceError, ValueError):
    """The source spec itself is wrong; the message says what to change."""


class SourcePolicyError(SourceError):
    """The source holds files the policy refuses (pickled weights) or lacks weights."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)
