"""The live console table: its columns follow what the run measures."""
import io
from types import SimpleNamespace

from debugsim.sim.console import LiveTable


def _header_after(record: dict) -> list[str]:
    out = io.StringIO()
    table = LiveTable(10, out=out)
    table.on_step_end(SimpleNamespace(record={"step": 0, "nonfinite": 0, **record}))
    header, row = out.getvalue().splitlines()
    assert len(header) == len(row)                       # every cell under its label
    return header.split()


def test_memory_shows_only_where_it_is_tracked():
    plain = _header_after({"loss": 2.7, "grad_norm": 1.0, "lr": 0.01, "mem_mib": None})
    tracked = _header_after({"loss": 2.7, "grad_norm": 1.0, "lr": 0.01, "mem_mib": 0.25})
    assert "mem" not in plain and "mem" in tracked
    assert plain[-1] == tracked[-1] == "eval"


def test_a_run_that_measures_its_own_signals_shows_them_before_the_held_out_loss():
    rlhf = _header_after({"loss": -0.9, "mem_mib": None, "reward": 2.3, "kl": 0.0,
                          "kl_penalty": 0.0, "gold_reward": 0.53})
    assert rlhf[-4:] == ["reward", "kl", "gold", "eval"]
    preferences = _header_after({"loss": 0.69, "mem_mib": None, "accuracy": 0.5, "margin": 0.0})
    assert preferences[-3:] == ["acc", "margin", "eval"]
