"""Honest grading: nothing a learner sees names the hidden cause, and only a real fix passes."""
import json

import pytest
from click.testing import CliRunner

from debugsim import cli
from debugsim.sim import app, home, registry

KEYS = ("honesty-key-a", "honesty-key-b")


def invoke(*args):
    return CliRunner().invoke(cli.cli, [str(a) for a in args])


def _learner_visible_text(folder) -> str:
    """Everything a run folder holds that a person or a script can read."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".json", ".jsonl", ".md"):
            parts.append(path.read_text())
        elif path.suffix == ".png":
            parts.append(path.read_bytes().decode("latin-1"))     # PNG text chunks
    return "\n".join(parts)


@pytest.mark.parametrize("scenario", registry.all_scenarios(), ids=lambda s: s.id)
def test_no_learner_visible_output_names_the_cause(scenario, tmp_path):
    """Every cause's run folder (files, plots' text chunks), summary and change list under one
    key; under a second key, with other decoys, what the decoys change: the settings a config
    file shows and the change list (config.json alone is tested over many keys below)."""
    for cause in scenario.causes:
        prepared = app.injected(scenario, 11, cause.id, key=KEYS[0])
        out = tmp_path / cause.id
        result = app.run(prepared, out)
        other = app.injected(scenario, 11, cause.id, key=KEYS[1])
        visible = "\n".join([_learner_visible_text(out), *prepared.engine.summary_lines(result),
                             *app.changes(prepared), *app.changes(other),
                             json.dumps(other.engine.settings_of(other), default=str)])
        for named in (cause.id, cause.title):
            assert named not in visible, f"{cause.id} shows in {out}"


def test_run_with_a_cause_is_a_fresh_incident_not_the_learners(tmp_path):
    seed = next(s for s in range(50) if app.incident("nan_loss", s).cause_id == "lr_too_high")
    mine = app.run(app.incident("nan_loss", seed), tmp_path / "mine", plots=False)
    fresh = app.run(app.injected("nan_loss", seed, "lr_too_high"), tmp_path / "fresh",
                    plots=False)
    assert mine.prepared.config != fresh.prepared.config
    assert (tmp_path / "mine" / "metrics.jsonl").read_bytes() != \
        (tmp_path / "fresh" / "metrics.jsonl").read_bytes()


def test_incidents_need_the_key():
    a = [app.incident("oom", s, key=KEYS[0]).cause_id for s in range(24)]
    b = [app.incident("oom", s, key=KEYS[1]).cause_id for s in range(24)]
    assert a != b                      # another key, other incidents of the same seeds


def test_a_wrong_answer_does_not_name_the_right_one():
    seed = next(s for s in range(50) if app.incident("nan_loss", s).cause_id == "fully_masked_row")
    result = invoke("check", "nan_loss", "--seed", seed, "--cause", "lr_too_high",
                    "--fix", "clip_grad", "--json")
    assert result.exit_code == 1
    verdict = json.loads(result.output)
    assert not verdict["cause_correct"] and "fully_masked_row" not in result.output
    text = invoke("check", "nan_loss", "--seed", seed, "--cause", "lr_too_high",
                  "--fix", "clip_grad").output
    assert "fully_masked_row" not in text and "not correct" in text


@pytest.mark.parametrize("scenario_id, settings", [
    ("oom_13b", ["gpu=192GB"]), ("oom_13b", ["model=gpt2", "seq=512"]),
    ("oom_13b", ["batch=1", "seq=256"]), ("oom_13b", ["zero=3", "gpus=8"]),
    ("oom", ["memory_budget_mib=16"]), ("oom", ["eval_batch_size=16"]),
    ("repetitive_decoding", ["gen_tokens=4"]), ("nan_loss", ["steps=5"]),
])
def test_settings_that_change_the_problem_are_refused(scenario_id, settings):
    args = [a for s in settings for a in ("--set", s)]
    cause = registry.get(scenario_id).causes[0].id
    result = invoke("check", scenario_id, "--seed", 1, "--cause", cause, *args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and ("changes the problem" in line
                                            or "not part of" in line)


def test_track_memory_is_not_a_setting():
    result = invoke("check", "oom", "--seed", 1, "--cause", "kept_graph",
                    "--set", "track_memory=false")
    assert result.exit_code == 2 and "unknown setting" in result.output


def test_the_shotgun_does_not_pass():
    scenario = registry.get("nan_loss")
    seed = next(s for s in range(50) if app.incident("nan_loss", s).cause_id == "fully_masked_row")
    fixes = [a for f in scenario.fixes if f.id != "right_padding" for a in ("--fix", f.id)]
    result = invoke("check", "nan_loss", "--seed", seed, "--cause", "fully_masked_row", *fixes,
                    "--json")
    verdict = json.loads(result.output)
    assert result.exit_code == 1 and verdict["fix_verdict"] == "resolved"
    assert len(verdict["unneeded"]) == len(scenario.fixes) - 2


def test_a_cache_bug_fixed_by_turning_the_cache_off_is_a_workaround():
    seed = next(s for s in range(50)
                if app.incident("repetitive_decoding", s).cause_id == "stale_kv_cache")
    result = invoke("check", "repetitive_decoding", "--seed", seed, "--cause", "stale_kv_cache",
                    "--set", "kv_cache=false", "--json")
    verdict = json.loads(result.output)
    assert result.exit_code == 1 and verdict["fix_verdict"] == "workaround"
    assert "square of the length" in verdict["costs"][0]


def test_reveal_is_recorded_and_says_the_cause():
    before = len(home.events("reveal", scenario="bad_lr", seed=3))
    result = invoke("reveal", "bad_lr", "--seed", 3, "--json")
    shown = json.loads(result.output)
    assert result.exit_code == 0 and shown["cause"] == app.incident("bad_lr", 3).cause_id
    assert len(home.events("reveal", scenario="bad_lr", seed=3)) == before + 1


def test_the_change_list_shows_decoys_beside_the_real_change():
    for seed in range(6):
        prepared = app.incident("nan_loss", seed)
        log = prepared.incident.change_log()
        assert len(log) >= 2 and log == sorted(log)
        assert any(line.startswith("Changes since the last good run") for line in
                   app.changes(prepared))


def _config_diff(prepared) -> tuple:
    """What config.json says changed since the last good run: (setting, value) pairs."""
    from debugsim.sim import incidents
    engine = prepared.engine
    last_good = engine.settings_of(engine.prepare(
        incidents.bare(prepared.scenario, prepared.incident.train_seed)))
    now = engine.settings_of(prepared)
    return tuple(sorted((k, str(v)) for k, v in now.items()
                        if k != "seed" and last_good.get(k) != v))


# Scenarios whose every cause is code behind a harmless-looking setting (oom_13b: a bug in the
# launcher between the job config and the model).
CONFIG_SILENT = ("nan_loss", "oom", "repetitive_decoding", "bad_lr", "oom_13b", "sft_label_mask",
                 "lora_wont_learn", "kv_cache_mismatch", "never_stops", "loss_fluctuates",
                 "too_good_to_be_true", "reward_model_backwards", "dpo_stuck",
                 "rlhf_reward_hacking")


@pytest.mark.parametrize("scenario_id", CONFIG_SILENT)
def test_config_json_alone_does_not_determine_the_cause(scenario_id):
    """Over many keys, every config diff a cause produces is also produced by another cause."""
    scenario = registry.get(scenario_id)
    causes_by_diff: dict[tuple, set] = {}
    for k in range(30):
        for cause in scenario.causes:
            diff = _config_diff(app.injected(scenario, 5, cause.id, key=f"diff-key-{k}"))
            causes_by_diff.setdefault(diff, set()).add(cause.id)
    telling = {diff: causes for diff, causes in causes_by_diff.items() if len(causes) == 1}
    assert not telling, telling


@pytest.mark.parametrize("scenario", registry.all_scenarios(), ids=lambda s: s.id)
def test_every_change_log_line_of_a_cause_is_also_a_decoy(scenario):
    """A line only the real change ever writes would name the cause in the change log."""
    decoy_lines = {decoy.log for decoy in scenario.decoys}
    for cause in scenario.causes:
        assert set(cause.changes) <= decoy_lines, (cause.id, set(cause.changes) - decoy_lines)


def test_oom_13b_files_name_the_job_by_its_config_not_by_what_the_launcher_ran(tmp_path):
    """Both launcher bugs leave config.json, plan.json's strategy, the labels and the job line
    exactly as the config asks; only the numbers (breakdown, trainable parameters) differ."""
    scenario = registry.get("oom_13b")
    for k in range(3):
        shown = {}
        for cause in scenario.causes:
            prepared = app.injected(scenario, 7, cause.id, key=f"planner-key-{k}")
            out = tmp_path / f"{k}-{cause.id}"
            result = app.run(prepared, out)
            config = json.loads((out / "config.json").read_text())["config"]
            plan = json.loads((out / "plan.json").read_text())
            summary = json.loads((out / "summary.json").read_text())
            assert {**plan["strategy"], "model": config["model"], "gpu": config["gpu"]} == config
            assert config["method"] == "lora"
            assert config["checkpointing"] is True and config["label"].startswith("lora+ckpt")
            shown[cause.id] = (config, summary["plan"], summary["strategy"],
                               prepared.engine.summary_lines(result)[0])
            assert set(summary) == set(app.simulate(scenario, 7).summary)    # no extra field
        assert len({json.dumps(v, sort_keys=True) for v in shown.values()}) == 1, shown


def test_oom_13b_plan_probe_shows_what_ran_not_a_conclusion(tmp_path):
    import re
    from debugsim.sim.probes import find
    scenario = registry.get("oom_13b")
    probe = find("plan", scenario)
    shares = {}
    for cause in scenario.causes:
        result = app.execute(app.injected(scenario, 2, cause.id, key="planner-probe"))
        text = probe.run(result, [], tmp_path)
        assert "job config: LoRA r=" in text and "dominat" not in text and "launcher" not in text
        shares[cause.id] = float(re.search(r"trainable%: ([\d.]+)", text)[1])
    assert shares["peft_config_dropped"] == 100.0
    assert 0 < shares["checkpointing_not_enabled"] < 1
