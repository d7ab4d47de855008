"""The CLI as a user drives it."""
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from debugsim import cli
from debugsim.sim import app, registry
from debugsim.sim.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args, input=None):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], input=input)


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--json"], ["run", "--help"],
                                  ["play", "--help"], ["check", "--help"], ["show", "--help"],
                                  ["dev", "check", "--help"], ["memory", "--help"]])
def test_fast_commands_do_not_import_torch(argv):
    code = ("import sys\nfrom debugsim import cli\n"
            "try:\n    cli.cli.main(sys.argv[1:], standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_list_and_show():
    listed = json.loads(invoke("list", "--json").output)
    assert {s["id"] for s in listed} >= {"nan_loss", "oom", "bad_lr", "repetitive_decoding"}
    shown = json.loads(invoke("show", "nan_loss", "--answers", "--json").output)
    assert {c["id"] for c in shown["causes"]} == {c.id for c in registry.get("nan_loss").causes}
    assert "causes" not in json.loads(invoke("show", "nan_loss", "--json").output)


@pytest.mark.parametrize("args, fragment", [
    (["show", "nan_los"], "did you mean 'nan_loss'"),
    (["run", "nan_loss", "--cause", "lr_to_high"], "did you mean 'lr_too_high'"),
    (["run", "nan_loss", "--fix", "fix_sheduler"], "did you mean 'fix_scheduler'"),
    (["run", "nan_loss", "--set", "lr=-1"], "lr=-1.0: must be greater than 0"),
    (["run", "nan_loss", "--set", "batch_size=abc"], "expected an integer"),
    (["run", "nan_loss", "--set", "colour=red"], "unknown setting 'colour'"),
    (["check", "nan_loss", "--seed", "1", "--cause", "nope", "--fix", "clip_grad"],
     "unknown cause 'nope'"),
    (["check", "nan_loss", "--seed", "1", "--cause", "lr_too_high"], "name a fix"),
    # a planner setting the planner cannot compute is caught when settings are validated
    (["run", "oom_13b", "--seed", "0", "--set", "model=gpt2"],
     "gpt2 has learned positions for only 1024 tokens"),
    (["run", "oom_13b", "--seed", "0", "--set", "model=gtp2"],
     "unknown model 'gtp2'; did you mean 'gpt2'"),
    # ... and graded answers may not change the model at all
    (["check", "oom_13b", "--seed", "0", "--cause", "peft_config_dropped", "--set", "model=gpt2"],
     "changes the problem, not the fix"),
    (["run", "oom_13b", "--set", "gpu=abc"], "not a size"),
    # an unknown setting lists the valid ones, with a suggestion when one is close
    (["run", "nan_loss", "--set", "foo=1"], "unknown setting 'foo'; settings: model, vocab_size"),
    (["run", "nan_loss", "--set", "lrr=1"], "unknown setting 'lrr' (did you mean 'lr'?); settings:"),
    (["run", "oom_13b", "--set", "foo=1"], "planner settings: model, gpu, method"),
    (["run", "nan_loss", "--set", "seed=4294967296"], "seed=4294967296: must be at most 4294967295"),
])
def test_bad_input_is_one_line_exit_2(args, fragment):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output


def test_run_writes_artifacts(tmp_path):
    result = invoke("run", "bad_lr", "--seed", "0", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    for name in ("metrics.jsonl", "config.json", "summary.md", "timings.jsonl",
                 "plots/dashboard.png", "plots/loss.png"):
        assert (out / name).stat().st_size > 0, name
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "header" and lines[-1]["event"] == "end"
    assert sum(1 for line in lines if line["event"] == "step") == 60


def test_run_without_plots_writes_every_other_file(tmp_path):
    result = invoke("run", "bad_lr", "--seed", "0", "--no-plots", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == [
        "changes.md", "config.json", "metrics.jsonl", "summary.json", "summary.md",
        "timings.jsonl"]
    assert "## Plots" not in (out / "summary.md").read_text()


def test_same_seed_gives_byte_identical_metrics(tmp_path):
    for name in ("a", "b"):
        assert invoke("run", "nan_loss", "--seed", "4", "--no-plots",
                      "--out", tmp_path / name).exit_code == 0
    first = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    assert first == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    assert b'"step"' in first


def _seed_with_cause(scenario_id, cause_id):
    """A seed whose incident (under the tests' key) has this cause."""
    return next(s for s in range(100) if app.incident(scenario_id, s).cause_id == cause_id)


def test_check_exit_codes_follow_the_rerun():
    seed = _seed_with_cause("bad_lr", "lr_too_low")
    good = invoke("check", "bad_lr", "--seed", seed, "--cause", "lr_too_low",
                  "--fix", "lr_up_10x", "--json")
    assert good.exit_code == 0, good.output
    verdict = json.loads(good.output)
    assert verdict["passed"] and verdict["cause_correct"] and verdict["fix_verdict"] == "resolved"
    assert verdict["after"]["summary"]["final_loss"] < verdict["before"]["summary"]["final_loss"]
    wrong = invoke("check", "bad_lr", "--seed", seed, "--cause", "lr_too_low",
                   "--fix", "train_longer", "--json")
    assert wrong.exit_code == 1
    assert json.loads(wrong.output)["fix_verdict"] == "not_resolved"
    free_form = invoke("check", "bad_lr", "--seed", seed, "--cause", "lr_too_low",
                       "--set", "lr=0.3")        # the setup divides it by ten
    assert free_form.exit_code == 0, free_form.output


def test_masking_fix_is_called_out():
    seed = _seed_with_cause("nan_loss", "empty_label_division")
    result = invoke("check", "nan_loss", "--seed", seed, "--cause", "empty_label_division",
                    "--fix", "skip_nonfinite", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["fix_verdict"] == "masked"


def test_play_with_piped_input(tmp_path):
    seed = _seed_with_cause("bad_lr", "lr_too_low")
    answers = "table 0 3\ngrads 2\n\n2\ntrain_longer\nn\n"
    wrong = invoke("play", "bad_lr", "--seed", seed, "--out", tmp_path / "w", input=answers)
    assert wrong.exit_code == 1, wrong.output
    assert "NOT_RESOLVED" in wrong.output and "NOT PASSED" in wrong.output
    right = invoke("play", "bad_lr", "--seed", seed, "--out", tmp_path / "r",
                   input="\n7\n\n2\nzzz\nlr_up_10x\n")       # typos ask again
    assert right.exit_code == 0, right.output
    assert "unknown cause '7'" in right.output and "(an answer, please)" in right.output
    assert "unknown fix 'zzz'" in right.output
    assert "RESOLVED" in right.output and "PASSED" in right.output
    assert (tmp_path / "r" / "plots" / "before_after_loss.png").exists()
    # the broken run's plots, drawn while the learner read, are complete when play returns
    for name in ("dashboard.png", "loss.png", "grad_norm.png"):
        assert (tmp_path / "r" / "plots" / name).stat().st_size > 0, name
    assert "![dashboard](plots/dashboard.png)" in (tmp_path / "r" / "summary.md").read_text()


def test_play_by_flags(tmp_path):
    seed = _seed_with_cause("bad_lr", "lr_too_high")
    result = invoke("play", "bad_lr", "--seed", seed, "--out", tmp_path, "--probe", "grads 2",
                    "--cause", "lr_too_high", "--fix", "lr_down_10x")
    assert result.exit_code == 0, result.output
    assert "probe> grads 2" in result.output


class _Interrupt(Callback):
    def on_step_end(self, run):
        if run.step == 5:
            raise KeyboardInterrupt


def test_interrupted_run_leaves_valid_partial_metrics(tmp_path):
    prepared = app.prepare("bad_lr", 0, "lr_too_low")
    prepared = dataclasses.replace(prepared, callbacks=(*prepared.callbacks, _Interrupt))
    with pytest.raises(KeyboardInterrupt):
        app.execute(prepared, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["event"] for l in lines][-1] == "end" and lines[-1]["status"] == "interrupted"
    assert sum(1 for line in lines if line["event"] == "step") == 6   # steps 0..5 were logged
    assert not list(tmp_path.glob("*.part"))


def test_planner_scenario_is_graded_by_the_planner(tmp_path):
    seed = _seed_with_cause("oom_13b", "peft_config_dropped")
    wrong = invoke("play", "oom_13b", "--seed", seed, "--out", tmp_path / "w",
                   input="memory\n\n1\ncheckpointing\n")
    assert wrong.exit_code == 1, wrong.output
    # the job opens like a real one: its config and PyTorch's error, nothing that explains;
    # the config asks for LoRA, whatever the launcher made of it
    opening = " ".join(wrong.output[:wrong.output.index("probe>")].split())   # unwrapped
    assert "job: llama-2-13b" in opening and "LoRA r=" in opening
    assert "full fine-tune" not in opening
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in opening
    assert "GPU 0 has a total capacity of 40.00 GB of which" in opening
    for conclusion in ("optimizer_states", "dominated", "cheapest", "does not fit", "fits:"):
        assert conclusion not in opening
    # the breakdown comes from the `memory` probe the learner asked for, with the numbers of
    # what ran: every parameter trains. Asking for checkpointing in the config (it already
    # does) changes nothing, and the verdict says by how much it is over
    assert "optimizer_states" in wrong.output and "NOT_RESOLVED" in wrong.output
    assert "trainable params: 13,015,864,320 || all params: 13,015,864,320 || " \
           "trainable%: 100.0000" in wrong.output
    assert "Your plan:" in wrong.output and "does not fit" in wrong.output
    right = invoke("check", "oom_13b", "--seed", seed, "--cause", "peft_config_dropped",
                   "--fix", "pass_peft_config", "--json")
    assert right.exit_code == 0, right.output
    graded = json.loads(right.output)
    before, after = graded["before"]["summary"], graded["after"]["summary"]
    assert after["gpu_total_gb"] < 40 < before["gpu_total_gb"]
    assert before["plan"] == after["plan"] and before["plan"].startswith("lora+ckpt")  # config
    assert before["oom"]["message"].startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert after["oom"] is None
    numbers = re.search(r"Tried to allocate ([\d.]+) (GB|MB)\. .* this process has ([\d.]+) GB",
                        before["oom"]["message"])
    tried = float(numbers[1]) / (1 if numbers[2] == "GB" else 1000)
    assert float(numbers[3]) <= 40 < float(numbers[3]) + tried        # the first that did not fit
    for summary in (before, after):
        assert "why" not in summary and "cheapest_that_fit" not in summary
    folder = tmp_path / "w"
    assert not {"why", "cheapest_that_fit"} & set(json.loads((folder / "summary.json").read_text()))
    assert not {"why", "notes"} & set(json.loads((folder / "plan.json").read_text()))
    assert "cheapest" not in (folder / "summary.md").read_text()
    bad = invoke("check", "oom_13b", "--seed", seed, "--cause", "peft_config_dropped",
                 "--set", "gpu=abc")
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_a_run_folder_loads_back(tmp_path):
    from debugsim.sim.artifacts import load_run
    assert invoke("run", "bad_lr", "--seed", "2", "--out", tmp_path).exit_code == 0
    loaded = load_run(tmp_path)
    assert loaded.scenario_id == "bad_lr" and loaded.config.model == "mlp"
    assert len(loaded.series("loss")) == loaded.config.steps
    assert len(loaded.layer_series("hidden")) == loaded.config.steps   # the MLP's middle layer
    assert loaded.cause_id is None        # the folder does not give the answer away


def test_memory_command_is_registered_and_crosschecks_the_tiny_model():
    result = invoke("memory", "--crosscheck-tiny")
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "optimizer_states" in result.output
    assert invoke("memory", "--model", "llama-2-13b", "--gpu", "abc").exit_code == 2


@pytest.mark.parametrize("argv", [["run", "nan_loss", "--seed", "abc"], ["run"], ["bogus"],
                                  ["show", "nan_loss", "--answer"],
                                  ["run", "nan_loss", "--seed", "99999999999999999999"],
                                  ["run", "nan_loss", "--seed", "-1"],
                                  ["check", "nan_loss", "--seed", "4294967296", "--cause",
                                   "lr_too_high", "--fix", "clip_grad"],
                                  ["play", "nan_loss", "--seed", "4294967296"],
                                  ["dev", "check", "nan_loss", "--seeds", "0,4294967296"]])
def test_click_usage_errors_are_one_line_too(argv):
    code = "import sys; from debugsim import cli; sys.argv = ['debugsim', *sys.argv[1:]]; cli.main()"
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert done.stdout == ""


def test_a_closed_output_pipe_does_not_stop_the_run(tmp_path):
    from debugsim.sim.console import LiveTable

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            pass

    prepared = app.prepare("bad_lr", 0, "lr_too_low")
    table = LiveTable(60, out=ClosedPipe())
    prepared = dataclasses.replace(prepared, callbacks=(*prepared.callbacks, lambda: table))
    result = app.execute(prepared, tmp_path)
    assert table._reader_gone
    assert result.status == "completed" and len(result.records) == 60


def test_a_seed_out_of_range_is_rejected_before_anything_runs(tmp_path):
    out = tmp_path / "big"
    result = invoke("run", "nan_loss", "--seed", "99999999999999999999", "--out", out)
    assert result.exit_code == 2 and "is not in the range 0<=x<=4294967295" in result.output
    assert not out.exists()
    assert invoke("run", "nan_loss", "--seed", "4294967295", "--set", "steps=1",
                  "--out", tmp_path / "top").exit_code == 0           # the largest seed runs
    for seed in (-1, 2**32, 10**20, 1.5, True):                       # Python callers too
        with pytest.raises(app.UsageError, match="must be a whole number from 0 to 4294967295"):
            app.simulate("nan_loss", seed)
    with pytest.raises(app.UsageError):
        app.check("oom_13b", 2**32, "peft_config_dropped", ["pass_peft_config"])
    with pytest.raises(app.UsageError):
        app.incident("nan_loss", -5)


def _strict_json(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))


def test_json_has_null_not_nan(tmp_path):
    """A NaN run's --json, summary.json and metrics.jsonl parse with a strict parser."""
    cause = ["--cause", "fully_masked_row", "--set", "steps=2"]
    result = invoke("run", "nan_loss", "--seed", "0", *cause, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    summary = _strict_json(result.output)["summary"]
    assert summary["nonfinite_steps"] == 2 and summary["final_loss"] is None
    assert _strict_json((tmp_path / "summary.json").read_text())["final_loss"] is None
    _strict_json((tmp_path / "config.json").read_text())
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)
    seed = _seed_with_cause("nan_loss", "fully_masked_row")
    graded = invoke("check", "nan_loss", "--seed", seed, "--cause", "fully_masked_row",
                    "--fix", "clip_grad", "--json")
    assert graded.exit_code == 1, graded.output
    verdict = _strict_json(graded.output)
    assert verdict["after"]["summary"]["final_loss"] is None
    _strict_json(invoke("show", "nan_loss", "--json").output)
    _strict_json(invoke("memory", "--model", "gpt2", "--json").output)


def test_json_writers_turn_every_nonfinite_float_into_null(tmp_path):
    from debugsim.sim.files import json_text, write_json
    data = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (2, {"d": 0.0})}
    expected = {"a": None, "b": [None, None, 1.5], "c": [2, {"d": 0.0}]}
    assert _strict_json(json_text(data)) == expected
    write_json(tmp_path / "x.json", data)
    assert _strict_json((tmp_path / "x.json").read_text()) == expected


def test_counts_print_as_integers_in_check_lines():
    seed = _seed_with_cause("oom", "batch_too_large")
    result = invoke("check", "oom", "--seed", seed, "--cause", "batch_too_large",
                    "--fix", "smaller_batch")
    assert result.exit_code == 1, result.output
    line = next(l for l in result.output.splitlines() if "training sequences seen" in l)
    count = line.split(": ", 1)[1].split()[0]
    assert count.isdigit(), line                    # e.g. "576 (healthy >= 1920)", not "576.000"
    assert re.search(r"held-out loss: (\d+\.\d{3}|held-out loss not measurable)", result.output)


def test_ctrl_c_at_the_probe_prompt_asks_before_quitting(tmp_path):
    from debugsim.sim.play import play
    seed = _seed_with_cause("bad_lr", "lr_too_low")
    incident = app.incident("bad_lr", seed)

    def scripted(*answers):
        pending = list(answers)

        def ask(prompt):
            answer = pending.pop(0)
            if answer is KeyboardInterrupt:
                raise KeyboardInterrupt
            return answer
        return ask

    said = []
    verdict = play(incident, tmp_path / "a", said.append,
                   scripted(KeyboardInterrupt, "n", "", "2", "lr=0.3"))
    assert verdict.passed and any("Debrief" in line for line in said)
    with pytest.raises(KeyboardInterrupt):
        play(incident, tmp_path / "b", said.append, scripted(KeyboardInterrupt, "y"))
