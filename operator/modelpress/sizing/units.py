"""Byte units and Kubernetes memory quantities."""

from __future__ import annotations

import math
import re

from modelpress.sizing.errors import SizingError

KiB = 1024
MiB = 1024**2
GiB = 1024**3

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]i?|k)?\s*$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": KiB,
    "Mi": MiB,
    "Gi": GiB,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}


def parse_bytes(value: int | float | str) -> int:
    """Bytes from an integer or a Kubernetes quantity such as "22.05Gi" or "80G"."""
    if isinstance(value, bool):
        raise SizingError(f"memory must be a byte count or a quantity like '24Gi', not {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise SizingError(f"memory must be positive, got {value!r}")
        return int(value)
    match = _QUANTITY.match(str(value))
    if not match:
        raise SizingError(
            f"cannot read memory quantity {value!r}; write bytes or a quantity like '24Gi' or '80G'"
        )
    number, suffix = match.groups()
    result = int(float(number) * _FACTORS[suffix])
    if result <= 0:
        raise SizingError(f"memory must be positive, got {value!r}")
    return result


def gib(num_bytes: int | float) -> float:
    """Bytes as GiB, for messages and tables."""
    return num_bytes / GiB


def ceil_gib(num_bytes: int | float) -> int:
    """Whole GiB at least as large as `num_bytes` (never below 1)."""
    return max(1, math.ceil(num_bytes / GiB))


def memory_quantity(num_bytes: int | float) -> str:
    """A Kubernetes memory quantity rounded up to whole GiB, e.g. "18Gi"."""
    return f"{ceil_gib(num_bytes)}Gi"


def round_up(value: int, multiple: int) -> int:
    """`value` rounded up to a multiple of `multiple`."""
    return -(-value // multiple) * multiple
