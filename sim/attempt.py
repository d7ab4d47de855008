"""One attempt at an incident as it happens: the probes run, the time taken, the time left.

`play` keeps one; the score, the progress record and the drill's rubric read it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .config import ConfigError


@dataclass
class Attempt:
    limit_s: float | None = None                 # a timed drill's limit
    started: float = field(default_factory=time.monotonic)
    probes: list[str] = field(default_factory=list)   # the probe lines that ran

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float | None:
        return None if self.limit_s is None else self.limit_s - self.elapsed()

    def over_time(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def countdown(self) -> str:
        """'[12:34 left] ' before a prompt of a timed attempt ('' when untimed)."""
        left = self.left()
        if left is None:
            return ""
        return "[time is up] " if left <= 0 else f"[{clock(left)} left] "


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def parse_duration(text: str) -> float:
    """'15m', '90s', '1h', '1m30s' or plain seconds '600' -> seconds (ConfigError if not)."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
        if not text or not parts:
            raise ConfigError(f"time '{text}': write it like 15m, 90s, 1h or 1m30s")
        hours, minutes, secs = (int(p or 0) for p in parts.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ConfigError(f"time '{text}': must be more than zero")
    return seconds
