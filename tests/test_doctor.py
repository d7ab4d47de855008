"""`debugsim doctor`: readers of other tools' logs, each rule on a synthetic log made to show
(or not show) its signal, a couple of real runs, and the command's errors. The rules' numbers
are read from the rule modules (thresholds), never from a scenario."""
import ast
import json
import math
import sys
from pathlib import Path

import pytest

from debugsim import cli
from debugsim.sim import app, doctor
from debugsim.sim.doctor.log import TrainingLog

DOCTOR = Path(doctor.__file__).parent


def log_of(loss=None, **series) -> TrainingLog:
    log = TrainingLog("synthetic", "synthetic")
    for name, values in {"loss": loss or [], **series}.items():
        for step, value in enumerate(values):
            log.add(name, step, value)
    return log


def families(log) -> list[str]:
    return [f.family for f in doctor.diagnose_log(log).findings]


def smooth(n=100, start=2.8, end=1.2, noise=0.03):
    """A healthy curve: fast fall, then a plateau, with batch-to-batch noise."""
    return [end + (start - end) * math.exp(-i / (n / 6)) + noise * math.sin(i * 2.3)
            for i in range(n)]


# --- readers ----------------------------------------------------------------------------------

def trainer_state(path: Path, nan_from: int, nan_to: int | None = None) -> Path:
    """A Hugging Face trainer_state.json logged every 10 steps, written as the Trainer writes
    it: bare NaN tokens. The gradient norm climbs before the NaN."""
    entries = []
    for step in range(10, 201, 10):
        bad = step >= nan_from and (nan_to is None or step <= nan_to)
        climb = 1.0 if nan_to is not None else 1.0 + 40.0 * max(0, step - 70) / 40
        entries.append({"epoch": step / 200, "grad_norm": "NaN" if bad else climb,
                        "learning_rate": 5e-5, "loss": "NaN" if bad else 2.5 - step / 200,
                        "step": step})
        if step % 50 == 0:
            entries.append({"epoch": step / 200, "eval_loss": 2.6 - step / 200, "step": step})
    entries.append({"epoch": 1.0, "step": 200, "train_loss": "NaN", "train_runtime": 12.0})
    text = json.dumps({"global_step": 200, "eval_steps": 50, "log_history": entries}, indent=2)
    path.write_text(text.replace('"NaN"', "NaN"))
    return path


def test_a_trainer_state_with_nan_from_step_120(tmp_path):
    path = trainer_state(tmp_path / "trainer_state.json", nan_from=120)
    assert "NaN," in path.read_text()                        # bare tokens, as HF writes them
    diagnosis = doctor.diagnose(tmp_path)                    # the folder holding it
    top = diagnosis.top
    assert diagnosis.log.format == "Hugging Face trainer_state.json"
    assert len(diagnosis.log.points("eval_loss")) == 4 and diagnosis.log.steps[-1] == 200
    assert top.family == "divergence" and top.where.startswith("120-200")
    assert top.causes and top.checks and "nan_loss" in top.trains
    text = "\n".join(doctor.render(diagnosis))
    assert "threshold:" in text and "debugsim play nan_loss" in text


def test_a_nan_at_step_120_alone_is_isolated(tmp_path):
    path = trainer_state(tmp_path / "trainer_state.json", nan_from=120, nan_to=120)
    assert doctor.diagnose(path).top.family == "nonfinite_isolated"


def test_a_csv_of_a_smooth_run_raises_no_alarm(tmp_path):
    rows = ["step,loss,learning_rate,grad_norm"] + [
        f"{i},{v:.5f},3e-4,{0.8 + 0.1 * math.sin(i):.4f}" for i, v in enumerate(smooth())]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    diagnosis = doctor.diagnose(tmp_path / "log.csv")
    assert diagnosis.log.format == "CSV" and len(diagnosis.log.points("lr")) == 100
    assert diagnosis.findings == []
    assert "no finding" in "\n".join(doctor.render(diagnosis))


def test_unknown_formats_name_the_supported_ones(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("loss went down\n")
    with pytest.raises(doctor.DoctorError, match="supported: debugsim metrics.jsonl; Hugging"):
        doctor.diagnose(tmp_path / "notes.txt")
    monkeypatch.setattr(sys, "argv", ["debugsim", "doctor", str(tmp_path / "notes.txt")])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1


def test_tensorboard_files_without_the_extra(tmp_path, monkeypatch):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "tensorboardX.proto.event_pb2", None)
    with pytest.raises(doctor.DoctorError, match=r"pip install 'debugsim\[tensorboard\]'"):
        doctor.diagnose(tmp_path)


# --- rules, on synthetic logs -------------------------------------------------------------------

def test_nonfinite_from_the_start_isolated_and_after_a_climb():
    nan = float("nan")
    assert families(log_of([nan] * 30, grad_norm=[nan] * 30))[0] == "nonfinite_from_start"
    isolated = smooth(60)
    isolated[20] = isolated[41] = nan
    assert families(log_of(isolated))[0] == "nonfinite_isolated"
    climb = [1.0] * 20 + [2.0 * 3 ** i for i in range(8)] + [nan] * 12
    loss = smooth(28) + [nan] * 12
    assert families(log_of(loss, grad_norm=climb))[0] == "divergence"


def test_memory_leak_sizing_and_spike():
    leak = log_of(smooth(20), mem_mib=[1.0 + 0.05 * i for i in range(20)])
    leak.end = {"status": "oom", "error": "CUDA out of memory. Tried to allocate 2.00 MiB."}
    assert families(leak)[0] == "memory_leak"
    sizing = TrainingLog("x", "x", end={"status": "oom", "error": "CUDA out of memory."})
    assert families(sizing) == ["memory_sizing"]
    spike = log_of(smooth(9), mem_mib=[0.7] * 9)
    spike.end, spike.config = {"status": "oom", "error": "CUDA out of memory."}, {"eval_every": 10}
    finding = doctor.diagnose_log(spike).top
    assert finding.family == "memory_spike" and "eval_every=10" in finding.where
    assert finding.confidence >= 0.8
    assert families(log_of(smooth(20), mem_mib=[0.7] * 20)) == []     # flat and completed


def test_spikes_oscillation_slow_progress_and_a_period():
    spiky = smooth(60)
    spiky[6:9] = [9.0, 30.0, 6.0]
    assert families(log_of(spiky, grad_norm=[0.5] * 6 + [400.0] * 3 + [0.5] * 51))[0] == \
        "lr_too_high"
    swinging = [2.0 + (0.6 if i % 2 else -0.6) for i in range(60)]
    assert "lr_too_high" in families(log_of(swinging))
    slow = [2.8 - 0.004 * i for i in range(60)]                  # smooth, 9% in 60 steps
    finding = doctor.diagnose_log(log_of(slow)).top
    assert finding.family == "not_converged" and "no floor given" in finding.threshold
    assert doctor.diagnose_log(log_of(slow), floor=2.5).findings == []   # near its floor
    periodic = [2.0 - 0.005 * i + 0.3 * (i % 8 == 0) for i in range(96)]
    assert families(log_of(periodic))[0] == "unshuffled_data"


def test_the_noise_of_small_batches_is_neither_a_spike_nor_a_swing():
    """A ranking loss over a few pairs per step: one high batch now and then, and a plateau
    near 0 with large relative noise, while the weights barely move (a healthy reward model's
    log); the same curves held two steps, or with large updates, are findings."""
    descent = [0.69 * math.exp(-i / 8) for i in range(20)]
    one_high = descent[:]
    one_high[6] += 0.5
    plateau = noisy(20, 0.2, 1.5)
    assert "lr_too_high" not in families(log_of(one_high + plateau,
                                                update_ratio=[0.005] * 40))
    held = descent[:]
    held[6] += 0.5
    held[7] += 0.5
    assert "lr_too_high" in families(log_of(held + plateau, update_ratio=[0.005] * 40))
    assert "lr_too_high" in families(log_of(one_high + plateau, update_ratio=[0.05] * 40))


def test_update_ratio_and_a_rising_lr():
    assert "lr_too_high" in families(log_of(smooth(30), update_ratio=[0.3] * 30))
    assert "not_converged" in families(log_of(smooth(30), update_ratio=[1e-7] * 30))
    assert "lr_too_high" in families(log_of(smooth(30), lr=[0.1 * 1.15 ** i for i in range(30)]))
    assert families(log_of(smooth(30), lr=[min(1.0, (i + 1) / 5) * 3e-2 for i in range(30)])) \
        == []                                                    # a warmup that ends


def noisy(n, level, spread, seed=3):
    """Batch-to-batch noise around `level` (a fixed, seeded sequence)."""
    import random
    rng = random.Random(seed)
    return [level * (1 + spread * (rng.random() - 0.5)) for _ in range(n)]


def test_weights_that_never_move_with_and_without_gradients():
    loss = [3.6 + 0.1 * math.sin(i) for i in range(40)]        # drifts with the batches
    piled = [0.8 * (i + 1) for i in range(40)]                 # gradients pile up, unstepped
    top = doctor.diagnose_log(log_of(loss, grad_norm=piled, update_ratio=[0.0] * 40)).top
    assert top.family == "params_not_updated" and "pile up" in top.what
    assert "lora_wont_learn" in top.trains and top.severity == "failure"
    found = doctor.diagnose_log(log_of(loss, grad_norm=[0.0] * 40, update_ratio=[0.0] * 40))
    assert found.top.family == "no_gradient" and "exactly 0" in found.top.threshold
    assert "vanishing_gradients" not in [f.family for f in found.findings]    # said once
    assert "not_updated" not in [f.rule for f in doctor.diagnose_log(
        log_of(smooth(40), grad_norm=noisy(40, 1.0, 0.4), update_ratio=[0.0] * 3 + [1e-3] * 37)
    ).findings]                                               # a few steps without an update


def test_gradients_never_cleared_and_a_sawtooth_of_the_accumulation_period():
    grads = [sum(noisy(i + 1, 0.2, 0.5)) for i in range(60)]   # each step adds a batch's grad
    top = doctor.diagnose_log(log_of(smooth(60), grad_norm=grads)).top
    assert top.family == "gradients_not_cleared" and "10x" in top.threshold
    grows_then_noisy = [min(0.01 * 1.15 ** i, 0.5) * n for i, n in
                        enumerate(noisy(60, 1.0, 1.0))]        # LoRA's B growing from zero
    assert "gradients_not_cleared" not in families(log_of(smooth(60),
                                                          grad_norm=grows_then_noisy))
    saw = [0.2 * (1 + i % 4) * n for i, n in enumerate(noisy(60, 1.0, 0.2))]
    top = doctor.diagnose_log(log_of(smooth(60), grad_norm=saw, update_ratio=[0.02] * 60)).top
    assert top.family == "accumulation_mismatch" and "period 4" in top.what
    per_micro_batch = [0.02 if i % 4 == 3 else 0.0 for i in range(60)]   # once per window
    assert "accumulation_mismatch" not in families(log_of(smooth(60), grad_norm=saw,
                                                          update_ratio=per_micro_batch))


def test_a_loss_better_than_the_data_allows():
    collapse = [2.8 * math.exp(-i / 3) for i in range(60)]     # to ~0 within a few steps
    top = doctor.diagnose_log(log_of(collapse)).top
    assert top.family == "leakage" and "2%" in top.threshold and "no floor given" in top.threshold
    below = log_of(smooth(60, end=0.8), eval_loss=[None] * 59 + [0.8])
    assert doctor.diagnose_log(below).findings == []                   # no floor: not judged
    top = doctor.diagnose_log(below, floor=0.964).top
    assert top.family == "leakage" and "below the floor 0.964" in top.what


def test_a_held_out_loss_that_training_does_not_move():
    train = smooth(60, start=2.8, end=1.5)
    top = doctor.diagnose_log(log_of(train, eval_loss=[None] * 59 + [2.9])).top
    assert top.family == "train_eval_mismatch" and "sft_label_mask" in top.trains
    assert families(log_of(train, eval_loss=[None] * 59 + [1.7])) == []   # a normal gap


def test_a_smooth_run_with_every_series_raises_no_alarm():
    n = 80
    log = log_of(smooth(n), grad_norm=noisy(n, 0.5, 0.6), update_ratio=noisy(n, 2e-3, 0.5),
                 lr=[3e-3 * min(1.0, (i + 1) / 10) for i in range(n)],
                 eval_loss=[None] * (n - 1) + [1.35], mem_mib=[120.0] * n)
    assert doctor.diagnose_log(log).findings == []


def test_the_doctor_reads_only_the_log():
    """No module of the doctor imports the catalogue, the incidents or the app layer."""
    allowed = {"debugsim.sim.tensorboard"}
    for path in DOCTOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (node.module or "")
                depth = len(path.relative_to(DOCTOR).parts) - 1 + 1   # up to sim.doctor
                if node.level > depth:
                    assert f"debugsim.sim.{target}" in allowed, f"{path.name}: {target}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not any(n.startswith(("debugsim", "torch")) for n in names), path


# --- real runs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario, seed", [("nan_loss", 0), ("nan_loss", 1), ("bad_lr", 0),
                                            ("bad_lr", 1), ("reward_model_backwards", 0)])
def test_no_false_alarm_on_healthy_runs(tmp_path, scenario, seed):
    app.execute(app.prepare(scenario, seed), tmp_path)
    assert doctor.diagnose(tmp_path).findings == []


def test_a_real_broken_run_and_the_command(tmp_path, capsys):
    app.execute(app.injected("bad_lr", 0, "lr_too_high"), tmp_path)
    assert cli.cli(["doctor", str(tmp_path), "--json"], standalone_mode=False) is None
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == "debugsim metrics.jsonl" and shown["findings"]
    assert shown["findings"][0]["family"] == "lr_too_high"
    assert "bad_lr" in shown["findings"][0]["trains"]


def test_a_pairwise_loss_near_zero_is_not_leakage():
    """A preference loss starts at ln 2 and falls toward 0 when the pairs are separable (a
    healthy DPO run); a language model's loss falling to 1% of its start is a leak."""
    pairwise = [math.log(2) * math.exp(-i / 6) for i in range(40)]
    assert "leakage" not in families(log_of(pairwise))
    tokens = [2.6 * math.exp(-i / 6) for i in range(40)]
    assert families(log_of(tokens))[0] == "leakage"


def test_rlhf_logs_the_penalty_missing_a_reference_that_moves_and_a_kl_past_budget():
    """Synthetic RLHF logs (a policy-gradient loss around 0): the KL anchor's three failures,
    and a healthy run's KL and penalty raise nothing."""
    n = 24
    loss = [0.8 * math.sin(i * 1.7) for i in range(n)]
    moving = [0.05] * n
    healthy_kl = [0.0] + [2.0 + 0.4 * math.sin(i) for i in range(1, n)]
    healthy = log_of(loss, kl=healthy_kl, kl_penalty=[2 * k for k in healthy_kl],
                     update_ratio=moving)
    assert families(healthy) == []
    runaway_kl = [0.0] + [15 - 5 * math.exp(-i / 4) for i in range(1, n)]
    assert families(log_of(loss, kl=runaway_kl, kl_penalty=[0.0] * n, update_ratio=moving)) \
        == ["kl_penalty_missing"]
    assert families(log_of(loss, kl=[0.0] * n, kl_penalty=[0.0] * n, update_ratio=moving)) \
        == ["reference_not_frozen"]
    assert families(log_of(loss, kl=[0.0] * n, kl_penalty=[0.0] * n,
                           update_ratio=[0.0] * n)) != ["reference_not_frozen"]  # nothing moved
    assert families(log_of(loss, kl=runaway_kl, kl_penalty=[2 * k for k in runaway_kl],
                           update_ratio=moving)) == ["kl_runaway"]


def test_trl_names_for_the_kl_and_its_penalty(tmp_path):
    rows = ["step,objective/kl,objective/non_score_reward,objective/scores"]
    rows += [f"{i},{0.0 if i == 0 else 12.0 + i / 10},0.0,{1 + i / 5}" for i in range(20)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    assert [f.family for f in doctor.diagnose(tmp_path / "log.csv").findings] == \
        ["kl_penalty_missing"]
