"""The Hugging Face token: read from the file HF_TOKEN_PATH names, or HF_TOKEN; never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping

from modelpress.sources.errors import SourceError

TOKEN_PATH_ENV = "HF_TOKEN_PATH"
TOKEN_ENV = "HF_TOKEN"
REDACTED = "***"


def read_hf_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The token, or None for anonymous access. A named file that cannot be read is an error."""
    env = os.environ if environ is None else environ
    path = env.get(TOKEN_PATH_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise SourceError(
                f"{TOKEN_PATH_ENV} names {path}, which cannot be read ({error.strerror}): "
                "mount the token Secret there or unset the variable"
            ) from None
        if not token:
            raise SourceError(f"the token file {path} ({TOKEN_PATH_ENV}) is empty")
        return token
    token = (env.get(TOKEN_ENV) or "").strip()
    return token or None


def scrub(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` replaced by ***."""
    if not secret:
        return text
    return text.replace(secret, REDACTED)
