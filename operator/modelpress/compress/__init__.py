"""The compression engine: quantize, prune, distill, chains of them, and evaluation.

It runs inside Jobs through `modelpress compress`; the operator never imports it
(torch and transformers are imported inside functions). The public entry points:

- `compress_variant(base, variant, evaluation, out, ...)`: build, evaluate and
  publish one variant (see `engine`).
- `validate_variant(base, variant, evaluation, ...)`: only the checks, no heavy work.
- `import_gguf(gguf, out, package=...)`: a GGUF file to a Hugging Face checkpoint.
"""

from __future__ import annotations

from modelpress.compress.engine import CompressionResult, compress_variant
from modelpress.compress.errors import CompressionError
from modelpress.compress.gguf import ImportResult, import_gguf
from modelpress.compress.request import validate_variant

__all__ = [
    "CompressionError",
    "CompressionResult",
    "ImportResult",
    "compress_variant",
    "import_gguf",
    "validate_variant",
]
