"""The probe prompt as a shell: line editing and history (stdlib `readline`, where available)
and tab completion of probe names, then of signals, steps and decoding settings.

Only on a terminal: piped input is read as it is, with nothing added. History is kept in the
debugsim home (`probe_history`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from . import signals
from .session import probe_words

HISTORY_LINES = 500
SETTINGS = ("kv_cache=false", "kv_cache=true", "decode=greedy", "decode=sample",
            "temperature=0.8", "top_p=0.9", "repetition_penalty=1.3")


def candidates(before_cursor: str, first_words: list[str], steps: int) -> list[str]:
    """What may complete the word being typed, given the line up to the cursor."""
    words = before_cursor.split()
    typing = "" if before_cursor.endswith(" ") or not words else words[-1]
    if len(words) == 0 or (len(words) == 1 and typing):
        pool = [*first_words, "done"]
    else:
        pool = [*signals.names(), *SETTINGS, *map(str, range(steps))]
    return sorted({w for w in pool if w.startswith(typing)}, key=lambda w: (len(w), w))


@contextlib.contextmanager
def completion(scenario, result) -> Iterator[None]:
    """Tab completion and history at the probe prompt while the block runs (a terminal only)."""
    try:
        import readline
    except ImportError:                                 # e.g. Windows without pyreadline
        yield
        return
    if not sys.stdin.isatty():
        yield
        return
    from .home import home
    first = probe_words(scenario)
    steps = len(result.records)
    history = home() / "probe_history"
    found: list[str] = []

    def complete(text: str, state: int):
        if state == 0:
            found[:] = candidates(readline.get_line_buffer()[:readline.get_endidx()], first,
                                  steps)
        return found[state] if state < len(found) else None

    saved = readline.get_completer(), readline.get_completer_delims()
    readline.set_completer(complete)
    readline.set_completer_delims(" \t")
    binding = "bind ^I rl_complete" if "libedit" in (readline.__doc__ or "") else "tab: complete"
    readline.parse_and_bind(binding)
    readline.clear_history()
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    try:
        yield
    finally:
        readline.set_completer(saved[0])
        readline.set_completer_delims(saved[1])
        readline.set_history_length(HISTORY_LINES)
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            partial = history.with_name(history.name + ".tmp")
            readline.write_history_file(partial)
            os.replace(partial, history)
