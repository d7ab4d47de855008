"""The log table: per-step records as aligned text."""
from __future__ import annotations

from typing import Sequence

from ..result import RunResult
from ..signals import BY_NAME, TABLE
from ._common import NONFINITE_MARK, ProbeError, end_note, _fmt, int_arg

DEFAULT_COLUMNS = ("step", *(s.name for s in TABLE))


def _every_step(column: str) -> bool:
    """Whether None in this column means "was NaN/inf" rather than "not measured this step"."""
    return column.startswith("layer:") or (column in BY_NAME and BY_NAME[column].every_step)


def _columns(result: RunResult, columns) -> list[str]:
    layers = list(result.records[0].get("layer_grad_norm", {})) if result.records else []
    if columns is None:
        # the defaults, minus the ones this run never measured (eval, loss scale, memory)
        chosen = [c for c in DEFAULT_COLUMNS
                  if c == "step" or _every_step(c)
                  or any(r.get(c) is not None for r in result.records)]
        return chosen
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    out = ["step"] if "step" not in columns else []
    for column in columns:
        if column in ("layer_grad_norm", "layers"):
            out.extend(f"layer:{layer}" for layer in layers)
        elif column in layers:
            out.append(f"layer:{column}")
        elif column.startswith("layer:") and column[6:] in layers:
            out.append(column)
        elif result.records and column not in result.records[0]:
            from ..config import did_you_mean
            options = [*result.records[0].keys(), *layers]
            raise ProbeError(f"unknown column '{column}'{did_you_mean(column, options)}; "
                             f"choose from {', '.join(k for k in options if k != 'event')}")
        else:
            out.append(column)
    return out


def log_rows(result: RunResult, start: int | None = None, end: int | None = None) -> list[dict]:
    """The records with start <= step <= end (both inclusive; negative counts from the end)."""
    if not result.records:
        return []
    last = result.records[-1]["step"]
    lo = 0 if start is None else (last + 1 + start if start < 0 else start)
    hi = last if end is None else (last + 1 + end if end < 0 else end)
    return [r for r in result.records if lo <= r["step"] <= hi]


def log_table(result: RunResult, start: int | None = None, end: int | None = None,
              columns: Sequence[str] | str | None = None) -> str:
    """The per-step records from `start` to `end` (inclusive; negative = from the end) as an
    aligned text table. `columns` picks fields (any record field, `layer_grad_norm` for every
    layer, or a layer name); a NaN/inf value shows as NaN!, a value not measured as '-'."""
    cols = _columns(result, columns)
    rows = log_rows(result, start, end)
    lines = []
    if not result.records:
        return f"no steps recorded: {end_note(result)}"
    if not rows:
        return (f"no steps in range {start}..{end} "
                f"(recorded steps {result.records[0]['step']}..{result.records[-1]['step']})")
    table = [[_header(c) for c in cols]]
    any_nonfinite = False
    for record in rows:
        cells = []
        for column in cols:
            if column.startswith("layer:"):
                value = record.get("layer_grad_norm", {}).get(column[6:])
                spec = ".4g"
            else:
                value = record.get(column)
                spec = "d" if column == "step" else BY_NAME[column].fmt if column in BY_NAME \
                    else ".4g"
            if value is None and _every_step(column):
                cells.append(NONFINITE_MARK)
                any_nonfinite = True
            elif column == "updated":
                cells.append("yes" if value else "SKIP")
            elif column == "nonfinite" and value:
                cells.append(f"{value}!")
            else:
                cells.append(_fmt(value, spec))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    if any_nonfinite:
        notes.append(f"{NONFINITE_MARK} = NaN or inf")
    if result.status != "completed" and rows[-1] is result.records[-1]:
        notes.append(end_note(result))
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def _header(column: str) -> str:
    return BY_NAME[column].header if column in BY_NAME else column.replace("layer:", "g:")


NAME = "table"
USAGE = "table [START [END]]"
HELP = "the log table for a range of steps (negative counts from the end)"
ENGINES = ("training",)
ORDER = 10                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return log_table(result, *[int_arg(a, "step") for a in args[:2]])
