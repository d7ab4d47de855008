"""Probes on real (tiny) runs: log table, per-layer gradients, batch statistics, memory,
the LR range test and anomaly detection naming the op behind a NaN."""
from __future__ import annotations

import math

import pytest
import torch

from debugsim.sim import app, probes
from debugsim.sim.callbacks import Callback
from debugsim.sim.config import TrainConfig
from debugsim.sim.data import IGNORE
from debugsim.sim.loop import train
from debugsim.sim.scenario import Cause, Criterion, Fault, Fix, Scenario



class EmptyLabelsAtStep1(Callback):
    """A test fault that changes the batch: step 1's targets are all ignored."""

    def on_batch(self, run, batch):
        if run.step == 1:
            return type(batch)(batch.tokens, torch.full_like(batch.targets, IGNORE),
                               batch.key_padding)
        return None


def scratch(base, scenario_id="probe-scratch"):
    causes = (
        Cause("unsafe_mean", "unsafe mean", Fault("0/0", config={"loss_mean": "count_as_is"}),
              "", ""),
        Cause("empty_labels", "labels dropped", Fault("x", callbacks=(EmptyLabelsAtStep1,)),
              "", ""),
    )
    fixes = (Fix("guard", "guard the mean", config={"loss_mean": "count_at_least_one"}),)
    return Scenario(id=scenario_id, title="scratch", difficulty="easy", tags=(), story="",
                    base=base, causes=causes, fixes=fixes, criterion=Criterion(), debrief="",
                    interview_question="", resolves={"unsafe_mean": ("guard",)})


SFT_LEFT_INF = {"data": "sft", "padding_side": "left", "attn_mask_value": "-inf", "steps": 2}
SFT_GROUPED = {"data": "sft", "length_grouped": True, "steps": 3}


@pytest.fixture(scope="module")
def healthy():
    s = scratch({"steps": 6, "eval_every": 3})
    return s, app.simulate(s, 0, track_memory=True)


@pytest.fixture(scope="module")
def masked():
    s = scratch(SFT_LEFT_INF)
    return s, app.simulate(s, 0)


@pytest.fixture(scope="module")
def unsafe_mean():
    s = scratch(SFT_GROUPED)
    return s, app.simulate(s, 0, "unsafe_mean")


@pytest.fixture(scope="module")
def exploding():
    s = scratch({"optimizer": "sgd", "lr": 5.0, "steps": 12})
    return s, app.simulate(s, 0)


@pytest.fixture(scope="module")
def oom():
    s = scratch({"memory_budget_mib": 2.0, "steps": 3})
    return s, app.simulate(s, 0)


# --- log table ----------------------------------------------------------------------------

def test_log_table_ranges_are_inclusive_and_negative_counts_from_end(healthy):
    _, r = healthy
    def steps(text):
        return [int(line.split()[0]) for line in text.splitlines()[2:] if line[:4].strip().isdigit()]
    assert steps(probes.log_table(r)) == list(range(6))
    assert steps(probes.log_table(r, 2, 4)) == [2, 3, 4]
    assert steps(probes.log_table(r, start=-2)) == [4, 5]
    assert steps(probes.log_table(r, end=0)) == [0]
    assert "no steps in range" in probes.log_table(r, 50, 60)


def test_log_table_columns_and_alignment(healthy):
    _, r = healthy
    text = probes.log_table(r, columns=["loss", "layer_grad_norm", "eval_loss"])
    header = text.splitlines()[0].split()
    assert header == ["step", "loss", "g:embed", "g:block0", "g:block1", "g:head", "eval"]
    lines = text.splitlines()
    assert len({len(line) for line in lines[:8]}) <= 2         # aligned (the '-' column trims)
    assert "-" in lines[2].split()                              # eval not measured at step 0
    assert probes.log_table(r, columns="loss,block0").splitlines()[0].split() == [
        "step", "loss", "g:block0"]
    with pytest.raises(probes.ProbeError, match="did you mean 'grad_norm'"):
        probes.log_table(r, columns=["grad_nrom"])


def test_log_table_marks_nonfinite_and_handles_empty_runs(masked, oom):
    _, r = masked
    text = probes.log_table(r)
    assert probes.NONFINITE_MARK in text and "NaN or inf" in text
    _, r = oom
    assert "no steps recorded" in probes.log_table(r) and "out of memory" in probes.log_table(r)


# --- per-layer gradients ------------------------------------------------------------------

def test_layer_grads_match_the_record(healthy, oom):
    _, r = healthy
    report = probes.layer_grads(r, 3)
    assert report["step"] == 3
    assert set(report["layers"]) == {"embed", "block0", "block1", "head"}
    for layer, row in report["layers"].items():
        assert row["norm"] == pytest.approx(r.records[3]["layer_grad_norm"][layer])
    assert probes.layer_grads(r, -1)["step"] == 5
    assert "block0" in probes.render_layer_grads(report)
    with pytest.raises(probes.ProbeError, match="recorded steps 0..5"):
        probes.layer_grads(r, 99)
    _, r = oom
    empty = probes.layer_grads(r, 0)
    assert empty["step"] is None and "out of memory" in probes.render_layer_grads(empty)


def test_layer_grads_nonfinite(masked):
    _, r = masked
    report = probes.layer_grads(r, 0)
    assert all(math.isnan(row["norm"]) for row in report["layers"].values())
    assert probes.NONFINITE_MARK in probes.render_layer_grads(report)


# --- batch statistics ---------------------------------------------------------------------

def _loop_batch(config, callbacks, step, micro=0):
    """The batch the training loop itself handed to the model."""
    seen = {}

    class Grab(Callback):
        count = 0

        def on_step_start(self, run):
            self.count = 0

        def on_batch(self, run, batch):
            if run.step == step and self.count == micro:
                seen["batch"] = batch
                run.control.stop = True
            self.count += 1

    train(config, [*callbacks, Grab()])
    return seen["batch"]


def test_batch_stats_sft_left_padding_is_the_loops_batch(masked):
    s, r = masked
    stats = probes.batch_stats(r, 1)
    assert stats["padding_side"] == "left" and stats["config_padding_side"] == "left"
    assert 0 < stats["padding_share"] < 1
    rebuilt, _ = probes.rebuild_batch(r, 1)
    loop = _loop_batch(r.config, [], 1)
    assert torch.equal(rebuilt.tokens, loop.tokens) and torch.equal(rebuilt.targets, loop.targets)
    assert stats["supervised_tokens"] == int((loop.targets != IGNORE).sum())
    assert stats["rows"] == r.config.batch_size and stats["seq_len"] == r.config.seq_len
    assert stats["nonfinite"] == {"tokens": 0, "targets": 0}
    assert 2 <= stats["label_min"] <= stats["label_max"] < r.config.vocab_size  # EOS is 2
    text = probes.render_batch_stats(stats)
    assert "side: left" in text and "supervised tokens" in text


def test_batch_stats_right_padding_and_plain_lm():
    s = scratch({"data": "sft", "steps": 1})
    stats = probes.batch_stats(app.simulate(s, 0), 0)
    assert stats["padding_side"] == "right"
    s = scratch({"steps": 1})
    stats = probes.batch_stats(app.simulate(s, 0), 0)
    assert stats["padding_side"] == "none" and stats["padding_share"] == 0
    assert stats["supervised_share"] == 1.0 and stats["rows_without_supervision"] == 0


def test_batch_stats_finds_a_batch_with_no_labels(unsafe_mean):
    s, r = unsafe_mean
    step = r.summary["first_nonfinite_step"]
    stats = probes.batch_stats(r, step)
    assert stats["supervised_tokens"] == 0 and stats["rows_without_supervision"] == stats["rows"]
    assert "divides by this" in probes.render_batch_stats(stats)


def test_batch_stats_applies_batch_changing_faults():
    s = scratch({"steps": 3})
    r = app.simulate(s, 0, "empty_labels")
    assert probes.batch_stats(r, 1)["supervised_tokens"] == 0
    assert probes.batch_stats(r, 2)["supervised_tokens"] > 0


def test_batch_stats_on_an_oom_run_and_bad_micro(oom):
    s, r = oom
    stats = probes.batch_stats(r, 0)
    assert stats["in_run"] is False and stats["supervised_tokens"] > 0
    with pytest.raises(probes.ProbeError, match="micro-batch"):
        probes.batch_stats(r, 0, micro=3)


# --- memory -------------------------------------------------------------------------------

def test_memory_breakdown(healthy, oom, exploding):
    _, r = healthy
    report = probes.memory_breakdown(r)
    assert report["tracked"] and report["budget_mib"] is None and report["oom"] is None
    assert set(report["peak_breakdown_mib"]) >= {"parameters", "gradients", "activations"}
    assert sum(report["peak_breakdown_mib"].values()) == pytest.approx(report["peak_mib"],
                                                                        rel=1e-3)
    assert report["peak_step"] in report["steps"] and len(report["in_use_mib"]) == 6
    assert "activations" in probes.render_memory_breakdown(report)
    _, r = oom
    report = probes.memory_breakdown(r)
    assert report["oom"]["step"] == 0 and report["peak_mib"] > report["budget_mib"] == 2.0
    assert "OUT OF MEMORY" in probes.render_memory_breakdown(report)
    _, r = exploding
    report = probes.memory_breakdown(r)
    assert not report["tracked"] and "not tracked" in probes.render_memory_breakdown(report)


# --- LR range test ------------------------------------------------------------------------

def test_lr_range_test_default_config_suggests_a_sane_lr():
    report = probes.lr_range_test(TrainConfig())
    lrs, smoothed = report["lrs"], report["smoothed"]
    assert len(lrs) == len(smoothed) == len(report["losses"]) <= 50
    assert lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in zip(lrs, lrs[1:]))
    assert 1e-3 <= report["suggested_lr"] <= 1e-1        # the default lr is 1e-2
    assert report["min_lr"] >= report["suggested_lr"]
    assert "suggested lr" in probes.render_lr_range_test(report)


def test_lr_range_test_uses_the_scenario_base_not_the_fault(healthy):
    s, r = healthy
    report = probes.lr_range_test(r, steps=12, end_lr=1.0)
    assert report["config"].steps == 12 and report["config"].data == "markov"
    assert report["config"].memory_budget_mib == 0
    s2 = scratch({"steps": 4, "data": "sft"})
    assert probes.lr_range_test(s2, steps=5)["config"].data == "sft"


# --- anomaly ------------------------------------------------------------------------------

def _frames(frames):
    return [f"{f['file']}:{f['function']}: {f['code']}" for f in frames]


def test_anomaly_shows_the_softmax_of_a_fully_masked_row(masked):
    s, r = masked
    report = probes.anomaly(r)
    assert report["found"] and report["step"] == 0
    assert report["forward_loss"] and not math.isfinite(report["forward_loss"][0])
    assert report["params_nonfinite_before"] == []
    # what anomaly mode itself raised: a softmax backward Function, its forward call
    a = report["anomaly"]
    assert a["function"] == "LogSoftmaxBackward0" and a["output"] == 0
    assert a["error"] == ("RuntimeError: Function 'LogSoftmaxBackward0' returned nan values "
                          "in its 0th output.")
    assert a["warning"].startswith("UserWarning: Error detected in LogSoftmaxBackward0")
    assert a["forward_traceback"] and all(f["file"].startswith("sim/")
                                          for f in a["forward_traceback"])
    # the forward check: the attention's softmax made the first NaN, in the model's frame
    first = report["forward_check"]["first_nan"]
    assert first["function"] == "torch.nn.functional.softmax"
    assert first["grad_fn"] == "SoftmaxBackward0"
    assert first["traceback"][-1]["file"] == "sim/models.py"
    assert "F.softmax(scores" in first["traceback"][-1]["code"]
    assert report["forward_check"]["first_nonfinite_module"]["module"] == "blocks.0.attn"
    text = probes.render_anomaly(report)
    assert "Function 'LogSoftmaxBackward0' returned nan values in its 0th output" in text
    assert "SoftmaxBackward0" in text and 'File "sim/models.py"' in text
    assert "F.softmax(scores.masked_fill(~allowed, fill), dim=-1)" in text


def test_anomaly_shows_only_the_training_codes_frames(masked):
    """Frames of the probe's replay, the app layer and torch are cut from every traceback."""
    _, r = masked
    report = probes.anomaly(r)
    frames = [*report["anomaly"]["forward_traceback"],
              *report["forward_check"]["first_nan"]["traceback"]]
    files = {f["file"] for f in frames}
    assert files <= {"sim/loop.py", "sim/models.py", "sim/callbacks.py"}
    text = probes.render_anomaly(report)
    for machinery in ("replay.py", "probes", "session.py", "play.py", "torch/", "app.py"):
        assert machinery not in text


def test_anomaly_shows_the_division_of_an_empty_token_mean(unsafe_mean):
    s, r = unsafe_mean
    report = probes.anomaly(r)
    assert report["found"] and report["step"] == r.summary["first_nonfinite_step"]
    assert not math.isfinite(report["forward_loss"][0])
    assert report["anomaly"]["error"] is None          # the backward carried no NaN
    first = report["forward_check"]["first_nan"]
    assert first["grad_fn"] == "DivBackward0"
    assert first["inputs"] == ["float32[] = 0", "int64[] = 0"]
    assert first["traceback"][-1] == {"file": "sim/loop.py", "line": first["traceback"][-1][
        "line"], "function": "average_token_loss", "code": "return loss_sum / n_tokens"}
    text = probes.render_anomaly(report)
    assert "backward finished without an error" in text and "DivBackward0" in text


def test_anomaly_on_an_exploding_lr_shows_the_blow_up(exploding):
    s, r = exploding
    report = probes.anomaly(r)
    first = r.summary["first_nonfinite_step"]
    assert first is not None and report["found"] and report["step"] == first
    assert report["param_norm_before"] > 100 * report["param_norm_start"]
    assert report["max_abs_param"] > 1e3
    check = report["forward_check"]
    made = [e for e in (check["first_nan"], check["first_inf"]) if e]
    assert made and all(e["grad_fn"] not in ("SoftmaxBackward0", "DivBackward0") for e in made)


def test_anomaly_prints_evidence_not_conclusions(masked, unsafe_mean, exploding):
    for _, r in (masked, unsafe_mean, exploding):
        text = probes.render_anomaly(probes.anomaly(r))
        for conclusion in ("=>", "0 / 0", "entirely -inf", "nothing to attend", "overflow",
                           "culprit", "already non-finite before backward", "only carries"):
            assert conclusion not in text


def test_anomaly_never_names_a_cause():
    """Each nan_loss cause, injected by name: the output carries no cause id or title."""
    spec = app.scenario("nan_loss")
    for cause in spec.causes:
        r = app.simulate(spec, 0, cause=cause.id, settings={"steps": 12})
        text = probes.render_anomaly(probes.anomaly(r))
        for c in spec.causes:
            assert c.id not in text and c.title.lower() not in text.lower()


def test_anomaly_without_a_nonfinite_step(healthy, oom):
    _, r = healthy
    report = probes.anomaly(r)
    assert not report["found"] and "no non-finite step" in probes.render_anomaly(report)
    _, r = oom
    report = probes.anomaly(r)
    assert not report["found"] and "out of memory" in report["note"]


def test_anomaly_after_the_fix_has_nothing_to_find():
    s = scratch(SFT_GROUPED)
    r = app.simulate(s, 0, "unsafe_mean", ["guard"])
    assert r.summary["first_nonfinite_step"] is None
    assert not probes.anomaly(r)["found"]


def test_importing_probes_does_not_import_torch():
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys, debugsim.sim.probes, debugsim.sim.plots; "
            "sys.exit(any(m in sys.modules for m in ('torch', 'matplotlib')))")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
