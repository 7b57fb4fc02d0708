"""Source errors. Messages never contain the Hugging Face token."""

from __future__ import annotations


class SourceError(Exception):
    """A base model could not be resolved or imported."""


class SourceSpecError(SourceError, ValueError):
    """The source spec itself is wrong; the message says what to change."""


class SourcePolicyError(SourceError):
    """The source holds files the policy refuses (pickled weights) or lacks weights."""
