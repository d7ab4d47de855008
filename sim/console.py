"""The live console table: a readable row every few steps, with a progress counter."""
from __future__ import annotations

import math
import sys

from .callbacks import Callback
from .signals import CONSOLE, MEASURED


def fmt(value, width: int) -> str:
    if value is None:
        return "nan".rjust(width)
    if isinstance(value, bool):
        return str(value).rjust(width)
    if isinstance(value, int):
        return str(value).rjust(width)
    if value == 0:
        return "0".rjust(width)
    magnitude = abs(value)
    text = f"{value:.3e}" if magnitude >= 1e5 or magnitude < 1e-3 else f"{value:.4g}"
    return text.rjust(width)


class LiveTable(Callback):
    """Prints the header once, then selected step rows; goes after the Recorder. The columns
    are the console's own (memory where it is tracked), then the signals this kind of run
    measures for itself (a reward model's accuracy, an RLHF run's reward and KL), as the first
    record has them."""

    def __init__(self, total_steps: int, out=None, rows: int = 12) -> None:
        self.total = total_steps
        self.every = max(1, math.ceil(total_steps / rows))
        self.out = out or sys.stdout
        self.width = len(str(total_steps))
        self._printed_header = False
        self._seen_nonfinite = False
        self._reader_gone = False
        self.columns = CONSOLE

    def header(self) -> str:
        step = "step".rjust(max(self.width, 4)) + " done"
        return step + " " + " ".join(s.console_header.rjust(s.console_width)
                                     for s in self.columns)

    def on_step_end(self, run) -> None:
        if self._reader_gone or run.record is None:
            return
        try:
            self._print_row(run.record)
        except BrokenPipeError:      # e.g. `debugsim run ... | head`: the reader left, the run goes on
            self._reader_gone = True

    def _print_row(self, record: dict) -> None:
        if not self._printed_header:
            own = tuple(s for s in MEASURED if s.console_width and s.name in record)
            shown = tuple(s for s in CONSOLE[:-1]      # memory only where it is tracked
                          if s.name != "mem_mib" or record.get("mem_mib") is not None)
            self.columns = (*shown, *own, CONSOLE[-1])              # held-out loss stays last
            print(self.header(), file=self.out)
            self._printed_header = True
        step = record["step"]
        first_bad = record["nonfinite"] and not self._seen_nonfinite
        self._seen_nonfinite = self._seen_nonfinite or bool(record["nonfinite"])
        last = step == self.total - 1
        if step % self.every and not first_bad and not last and record.get("eval_loss") is None:
            return
        progress = f"{step:>{max(self.width, 4)}} {100 * (step + 1) // self.total:>3}%"
        cells = " ".join("-".rjust(s.console_width) if not s.every_step and record.get(s.name) is None
                         else fmt(record.get(s.name), s.console_width) for s in self.columns)
        note = "  <- first non-finite values" if first_bad else ""
        print(f"{progress} {cells}{note}", file=self.out, flush=True)
