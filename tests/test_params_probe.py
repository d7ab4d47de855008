"""The `params` probe: per parameter, trainable, in the optimizer, its gradient, how far it moved."""
import pytest

from debugsim.sim import app
from debugsim.sim.probes import find
from debugsim.sim.probes.params import parameter_report


def test_a_plain_run_trains_every_parameter_and_says_so(tmp_path):
    result = app.simulate("bad_lr", 0, None, settings={"steps": 3})
    report = parameter_report(result)
    rows = report["parameters"]
    total = sum(row["count"] for row in rows)
    assert report["line"] == (f"trainable params: {total:,} || all params: {total:,} || "
                              "trainable%: 100.0000")
    assert sum(row["share"] for row in rows) == pytest.approx(1.0)
    assert all(row["trainable"] and row["in_optimizer"] and row["grad_steps"] == 3
               and row["moved"] > 0 for row in rows)
    text = find("params", result.prepared.scenario).run(result, [], tmp_path)
    assert text.splitlines()[0] == report["line"] and "hidden.weight" in text
