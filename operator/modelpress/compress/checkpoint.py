"""Reading and writing Hugging Face checkpoint directories.

Models are computed on in fp32 (fastest on CPU, exact for training) and saved in
the base model's dtype, so a compressed variant is never larger than it must be.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.compress.errors import CompressionError

if TYPE_CHECKING:
    import torch

_HEADER_LENGTH = struct.Struct("<Q")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor names to dtype, shape, offsets."""
    with path.open("rb") as stream:
        (length,) = _HEADER_LENGTH.unpack(stream.read(_HEADER_LENGTH.size))
        return json.loads(stream.read(length))


def weights_bytes(directory: Path) -> int:
    """Exact bytes of every tensor in the directory's safetensors files, headers excluded."""
    total = 0
    for path in sorted(directory.glob("*.safetensors")):
        for name, entry in safetensors_header(path).items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            total += end - start
    return total


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise CompressionError(
            f"{directory} holds no config.json: give a Hugging Face checkpoint",
            reason="InvalidBaseModel",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def base_dtype(config: Any) -> torch.dtype:
    """The dtype the checkpoint was saved in (bf16 when it does not say)."""
    import torch

    name = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(name, torch.dtype):
        return name
    return {"float32": torch.float32, "float16": torch.float16}.get(str(name), torch.bfloat16)


def load_model(directory: Path, *, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """A causal LM from `directory` in `dtype` (fp32 by default), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype or torch.float32)
    model.eval()
    return model


def load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise CompressionError(
            f"{directory} has no usable tokenizer ({error}): publish the base model with its "
            "tokenizer files",
            reason="InvalidBaseModel",
        ) from None


def save_dense(model: torch.nn.Module, tokenizer: Any, directory: Path, dtype: torch.dtype) -> None:
    """Save an unquantized model in `dtype` with its tokenizer and generation config."""
    original = next(model.parameters()).dtype
    model.to(dtype)
    model.config.dtype = dtype
    try:
        model.save_pretrained(directory)
    finally:
        model.to(original)
    tokenizer.save_pretrained(directory)
