"""Talking to the local vLLM server: readiness, the served model, a chat request.

Plain `urllib` on 127.0.0.1: nothing to install, nothing to proxy.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from typing import Any

from modelpress.local.errors import LocalRunError, PortInUseError

DEFAULT_PROMPT = "What is the capital of France? Answer in one sentence."
LOOPBACK = "127.0.0.1"

# Local requests must never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_port_free(port: int, host: str = LOOPBACK) -> None:
    """PortInUseError when something already listens on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUseError(
                f"port {port} on {host} is in use ({error.strerror}): stop what listens there "
                "or pass --port with a free port (--port 0 picks one)"
            ) from None


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with _OPENER.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def healthy(base_url: str, timeout: float = 2.0) -> bool:
    """True once the server answers GET /health with 200."""
    with (
        contextlib.suppress(OSError, urllib.error.URLError, ValueError),
        _OPENER.open(f"{base_url}/health", timeout=timeout) as response,
    ):
        return response.status == 200
    return False


def served_models(base_url: str) -> list[dict[str, Any]]:
    """GET /v1/models: each served model's id and `root` (the directory it was loaded from)."""
    return list(get_json(f"{base_url}/v1/models").get("data") or [])


class NoChatTemplateError(LocalRunError):
    """The served model has no chat template, so vLLM refuses chat requests."""


def _post(base_url: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")[:500]
        if error.code == 400 and "chat template" in detail:
            raise NoChatTemplateError(
                "the served model has no chat template (no chat_template in its tokenizer "
                "files), so vLLM refuses chat requests"
            ) from None
        raise LocalRunError(f"POST {path} failed with HTTP {error.code}: {detail}") from None
    except (OSError, urllib.error.URLError, ValueError) as error:
        raise LocalRunError(f"POST {base_url}{path} failed: {error}") from None


def _text(answer: Any, *path: Any) -> str:
    try:
        value = answer
        for part in path:
            value = value[part]
    except (KeyError, IndexError, TypeError):
        raise LocalRunError(f"the server's answer has no text: {str(answer)[:300]}") from None
    text = (value or "").strip()
    if not text:
        raise LocalRunError("the server answered with an empty completion")
    return text


def chat(
    base_url: str, model: str, prompt: str, *, max_tokens: int = 64, timeout: float = 300.0
) -> str:
    """One chat completion (greedy); the assistant's text. LocalRunError when none comes back."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    answer = _post(base_url, "/v1/chat/completions", body, timeout)
    return _text(answer, "choices", 0, "message", "content")


def complete(
    base_url: str, model: str, prompt: str, *, max_tokens: int = 64, timeout: float = 300.0
) -> str:
    """One plain text completion (greedy), for models without a chat template.

    The prompt is framed as `Question: ...\nAnswer:` and at least one token is asked
    for (vLLM's `min_tokens`): without its chat template, an instruct model often ends
    its text at once.
    """
    framed = f"Question: {prompt}\nAnswer:"
    body = {
        "model": model,
        "prompt": framed,
        "max_tokens": max_tokens,
        "min_tokens": 1,
        "temperature": 0,
    }
    answer = _post(base_url, "/v1/completions", body, timeout)
    return _text(answer, "choices", 0, "text")
