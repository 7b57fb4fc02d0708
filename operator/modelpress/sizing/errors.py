"""The one exception sizing raises: an input a user can correct."""

from __future__ import annotations


class SizingError(ValueError):
    """A model config, scheme, GPU product or serving setting that sizing cannot use.

    The message says what to change; the CLI prints it as a usage error and the
    operator turns it into a condition. A model that is valid but does not fit
    is not an error: it is a `SizingResult` with `fits=False`.
    """
