"""Errors of the compression engine.

A `CompressionError` is a mistake in what was asked (a group size that does not
divide a layer, too little text, an architecture a method cannot handle). It is
raised before any heavy work, and its message says what to change. Anything
else that goes wrong (storage, out of memory) propagates as its own exception.
"""

from __future__ import annotations


class CompressionError(Exception):
    """A request the engine cannot carry out as written; the message says what to change.

    `reason` is a CamelCase word the operator can put in a condition.
    """

    def __init__(self, message: str, *, reason: str = "InvalidVariant") -> None:
        super().__init__(message)
        self.reason = reason
