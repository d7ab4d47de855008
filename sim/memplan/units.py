"""Byte sizes: parse "80GB" / "80GiB" / "24G" / "1e9", format with one declared unit.

Conventions (stated in every report so they are never mixed silently):

* ``GB`` (and a bare ``G``) = 10**9 bytes -- what vendors print on the box and
  what the ZeRO / QLoRA papers use.
* ``GiB`` = 2**30 bytes -- what ``nvidia-smi`` and ``torch.cuda`` report.
  An "A100 80GB" physically has 80 GiB = 85.9 GB.
* A plain number is bytes.
"""
from __future__ import annotations

import math
import re

DECIMAL = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6,
           "G": 10**9, "GB": 10**9, "T": 10**12, "TB": 10**12}
BINARY = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
UNITS = {**DECIMAL, **BINARY}

# Display units a report can be written in.
DISPLAY = {"GB": (10**9, "GB = 10^9 bytes"), "GiB": (2**30, "GiB = 2^30 bytes")}

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


class SizeError(ValueError):
    """A size string could not be understood."""


def parse_size(text: str | int | float) -> int:
    """Return a size in bytes.

    >>> parse_size("80GB"), parse_size("80GiB"), parse_size("24G"), parse_size("1024")
    (80000000000, 85899345920, 24000000000, 1024)
    """
    if isinstance(text, bool):
        raise SizeError(f"not a size: {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        s = str(text).strip()
        if s.startswith("-"):
            raise SizeError(f"size must not be negative: {text!r}")
        m = _SIZE_RE.match(s)
        if not m:
            raise SizeError(f"not a size: {text!r} (try 80GB, 80GiB, 24G or a byte count)")
        value, unit = float(m.group(1)), m.group(2).upper()
    if unit not in UNITS:
        raise SizeError(f"unknown unit {unit!r} in {text!r} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; bare G = GB)")
    if value < 0 or not math.isfinite(value):
        raise SizeError(f"size must be a finite non-negative number: {text!r}")
    return int(round(value * UNITS[unit]))


def parse_count(text: str | int | float) -> int:
    """Parse a parameter count such as ``7.5e9``, ``13B``, ``350M``, ``124439808``."""
    s = str(text).strip().upper()
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
    factor = 1
    if s and s[-1] in mult:
        factor, s = mult[s[-1]], s[:-1]
    try:
        value = float(s) * factor
    except ValueError:
        raise SizeError(f"not a parameter count: {text!r} (try 7.5e9 or 13B)") from None
    if value <= 0 or not math.isfinite(value):
        raise SizeError(f"parameter count must be positive: {text!r}")
    return int(round(value))


def fmt_bytes(n: float, unit: str = "GB", digits: int = 2) -> str:
    """Format bytes in the given display unit (``GB`` or ``GiB``)."""
    div, _ = DISPLAY[unit]
    return f"{n / div:,.{digits}f} {unit}"


def unit_legend(unit: str = "GB") -> str:
    return DISPLAY[unit][1]


def fmt_count(n: int) -> str:
    """``13015864320`` -> ``13,015,864,320 (13.02 B)``."""
    if n >= 10**9:
        short = f"{n / 1e9:.2f} B"
    elif n >= 10**6:
        short = f"{n / 1e6:.2f} M"
    else:
        short = f"{n / 1e3:.1f} K"
    return f"{n:,} ({short})"
