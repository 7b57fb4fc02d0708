"""Fixtures for local mode: a fake vLLM environment, a store, small manifests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_ISOLATED_PREFIXES = ("AWS_", "MODELPRESS_", "HF_")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, Hub tokens or modelpress settings of the caller leak into a test."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


FAKE_SERVER = """
import argparse, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
for option in ("--model", "--served-model-name", "--host"):
    parser.add_argument(option)
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
record = os.environ.get("FAKE_VLLM_RECORD")
if record:
    with open(record, "w") as out:
        json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, out)
if os.environ.get("FAKE_VLLM_FAIL"):
    print("ValueError: cannot load this checkpoint", flush=True)
    sys.exit(1)


class Handler(BaseHTTPRequestHandler):
    def _json(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._json({})
        elif self.path == "/v1/models":
            self._json({"data": [{"id": args.served_model_name, "root": args.model}]})
        else:
            self.send_error(404)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert request["model"] == args.served_model_name
        if self.path == "/v1/completions":
            self._json({"choices": [{"text": " Paris " + json.dumps(request)}]})
        elif os.environ.get("FAKE_VLLM_NO_TEMPLATE"):
            message = b'{"error": {"message": "As of transformers v4.44, default chat template '
            message += b'is no longer allowed, so you must provide a chat template"}}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
        else:
            self._json({"choices": [{"message": {"content": "Paris, of course."}}]})

    def log_message(self, *_):
        pass


print("fake vLLM listening", flush=True)
ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
"""


#: Stands in for torch beside the fake vLLM, for its kernel probe: the int4 GEMM op is
#: there unless FAKE_VLLM_NO_INT4 is set (vLLM's AVX2 build).
FAKE_TORCH = """
import os, types
ops = types.SimpleNamespace(_C=types.SimpleNamespace())
if not os.environ.get("FAKE_VLLM_NO_INT4"):
    ops._C.cpu_gemm_wna16 = lambda *args: None
"""
FAKE_CUSTOM_OPS = """
import os, time
if os.environ.get("FAKE_VLLM_BROKEN_KERNELS"):
    raise ImportError("libcpu_kernels.so: cannot open shared object file")
if os.environ.get("FAKE_VLLM_HANGING_KERNELS"):
    time.sleep(60)
"""


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A virtual-environment-shaped directory whose python imports a stand-in `vllm`:
    `python -m vllm.entrypoints.openai.api_server` answers /health, /v1/models and chat
    like vLLM. FAKE_VLLM_RECORD names a file for its argv and env; FAKE_VLLM_FAIL makes
    it exit at start; FAKE_VLLM_NO_TEMPLATE makes it refuse chat as for a model without
    a chat template (its completions echo the request). Its kernel probe finds the int4
    kernel unless FAKE_VLLM_NO_INT4 is set; FAKE_VLLM_BROKEN_KERNELS makes it fail, and
    FAKE_VLLM_HANGING_KERNELS makes it hang."""
    packages = tmp_path / "fake-vllm-site"
    server = packages / "vllm" / "entrypoints" / "openai"
    server.mkdir(parents=True)
    for package in (packages / "vllm", server.parent, server):
        (package / "__init__.py").write_text("")
    (server / "api_server.py").write_text(FAKE_SERVER)
    (packages / "vllm" / "_custom_ops.py").write_text(FAKE_CUSTOM_OPS)
    (packages / "torch").mkdir()
    (packages / "torch" / "__init__.py").write_text(FAKE_TORCH)
    venv = tmp_path / "fake-vllm-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{packages}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return venv


@pytest.fixture
def spec_file() -> Callable[..., Path]:
    """`spec_file(path, **overrides)` writes a small CompressedModel file."""
    return write_spec


def write_spec(path: Path, **overrides: str) -> Path:
    """A small CompressedModel file; `overrides` replace whole top-level YAML lines."""
    fields = {
        "source": "  source: {uri: file:///nonexistent/model/}",
        "storage": f"  storage: {{uri: file://{path.parent}/store/}}",
        "variants": "  variants:\n    - {name: w4, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64}}",
        "evaluation": f"  evaluation: {{dataset: {{uri: file://{path.parent}/eval.txt}}}}",
        "serving": "  serving: {variant: auto}",
    }
    fields.update(overrides)
    text = (
        "apiVersion: modelpress.dev/v1alpha1\nkind: CompressedModel\n"
        "metadata: {name: tiny}\nspec:\n" + "\n".join(fields.values()) + "\n"
    )
    path.write_text(text)
    return path
