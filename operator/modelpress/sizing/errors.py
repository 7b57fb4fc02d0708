"""The one exception sizing raises: an input a user can correct."""

from __future__ import annotations


class SizingError(ValueError):
    """A model config, scheme, GPU product or serving setting that sizing cannot use.

    The message says what to change; the CLI prints it as a usage error and the
    operator turns it into a condition. A model that is valid but does not fit
    is not an error: it is a `SizingResult` with `fits=False`.
    """


def validation_message(error: Exception) -> str:
    """The first problem a pydantic ValidationError reports, as one readable line."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = str(first.get("msg", error)).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(error)
