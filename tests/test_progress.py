"""A learner's progress, hints, scores and the interview drill (cheap: the planner scenario)."""
import json
import re

import pytest
from click.testing import CliRunner

from debugsim import cli
from debugsim.sim import app, files, home, hints, probes, registry
from debugsim.sim.attempt import Attempt, parse_duration
from debugsim.sim.config import ConfigError
from debugsim.sim.drill import deciding_probes, rubric, rubric_lines
from debugsim.sim.prompt import candidates
from debugsim.sim.score import score


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """Each test starts with an empty record of its own."""
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path / "home"))
    home.notices.clear()
    return tmp_path / "home"


def invoke(*args, input=None):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], input=input)


def seed_with(cause: str, scenario: str = "oom_13b", skip: int = 0) -> int:
    found = [s for s in range(200) if app.incident(scenario, s).cause_id == cause]
    return found[skip]


def solve_everything_but(scenario_id: str) -> None:
    """Record a solved incident for every cause of every other scenario."""
    for spec in registry.all_scenarios():
        if spec.id != scenario_id:
            for number, cause in enumerate(spec.causes):
                home.record_event("attempt", scenario=spec.id, seed=number, cause=cause.id,
                                  passed=True, score=100)


# --- the record ---------------------------------------------------------------------------

def test_a_crash_mid_write_leaves_the_old_record_whole(own_home, monkeypatch):
    home.record_event("hint", scenario="oom_13b", seed=1, cause="peft_config_dropped", stage=1)
    before = (own_home / "record.json").read_text()

    def crash(*args):
        raise KeyboardInterrupt                      # killed between writing and renaming
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(files.os, "replace", crash)
        home.record_event("reveal", scenario="oom_13b", seed=1, cause="peft_config_dropped")
    assert (own_home / "record.json").read_text() == before
    assert len(home.events()) == 1


def test_a_corrupt_record_is_reported_and_kept_aside(own_home):
    own_home.mkdir(parents=True)
    (own_home / "record.json").write_text('{"format_version": 2, "events": [')
    result = invoke("progress")
    assert result.exit_code == 0 and "No progress yet" in result.output
    kept = list(own_home.glob("record.corrupt-*.json"))
    assert len(kept) == 1 and kept[0].read_text().endswith("[")
    assert any("was corrupt" in notice for notice in home.notices)


def test_a_newer_record_is_left_alone_with_a_one_line_error(own_home):
    own_home.mkdir(parents=True)
    newer = '{"format_version": 99, "events": []}'
    (own_home / "record.json").write_text(newer)
    result = invoke("progress")
    assert result.exit_code == 2 and "newer debugsim" in result.output
    assert (own_home / "record.json").read_text() == newer


def test_a_format_1_record_is_read_and_its_causes_filled_in(own_home):
    seed = seed_with("peft_config_dropped")
    own_home.mkdir(parents=True)
    (own_home / "record.json").write_text(json.dumps({"format_version": 1, "events": [
        {"kind": "attempt", "time": 1.0, "scenario": "oom_13b", "seed": seed,
         "cause_correct": True, "fix_verdict": "resolved", "passed": True}]}))
    [row] = app.progress()
    assert (row.scenario, row.cause, row.solved, row.attempts) == \
        ("oom_13b", "peft_config_dropped", 1, 1)
    home.record_event("hint", scenario="oom_13b", seed=seed + 1, cause=None, stage=1)
    saved = json.loads((own_home / "record.json").read_text())
    assert saved["format_version"] == home.FORMAT_VERSION == 2


# --- hints, reveals, scores --------------------------------------------------------------------

def test_every_cause_has_two_hints_that_point_at_a_probe_and_do_not_name_it():
    for spec in registry.all_scenarios():
        words = set(spec.causes and [w for p in probes.for_scenario(spec)
                                     for w in (p.NAME, *getattr(p, "ALIASES", ()))])
        for cause in spec.causes:
            assert len(cause.hints) == 2, (spec.id, cause.id)
            for stage in (1, 2):
                text = hints.text(cause, stage).lower()
                assert cause.id.replace("_", " ") not in text and cause.id not in text
                assert cause.title.lower() not in text
            named = re.findall(r"\(([a-z_]+)[ )]", hints.text(cause, 1)) + \
                hints.text(cause, 1).lower().replace(",", " ").split()
            assert words & set(named), (spec.id, cause.id, "names no probe")
            assert cause.title in hints.text(cause, 3)


def test_hints_are_staged_recorded_and_cost_points():
    seed = seed_with("checkpointing_not_enabled")
    said = [invoke("hint", "oom_13b", "--seed", seed).output for _ in range(4)]
    assert [s.split(":")[0] for s in said] == ["Hint 1 of 3 (-5 points)",
                                               "Hint 2 of 3 (-10 points)",
                                               "Hint 3 of 3 (-25 points)",
                                               "Hint 3 of 3 (-25 points)"]
    assert "never switched on" in said[2] and "never switched on" not in said[0] + said[1]
    verdict = app.check("oom_13b", seed, "checkpointing_not_enabled", ["enable_checkpointing"])
    [row] = app.progress()
    assert verdict.passed and row.hints == 3 and row.best_score == 100 - 5 - 10 - 25
    assert row.cause == "checkpointing_not_enabled"         # the third hint told it


def test_a_reveal_is_counted_and_never_solves():
    seed = seed_with("peft_config_dropped")
    app.check("oom_13b", seed, "checkpointing_not_enabled", ["enable_checkpointing"])      # wrong
    [row] = app.progress()
    assert row.cause is None and row.solved == 0       # not known yet: not named
    assert "peft_config_dropped" not in invoke("progress", "--json").output
    invoke("reveal", "oom_13b", "--seed", seed)
    assert app.check("oom_13b", seed, "peft_config_dropped", ["pass_peft_config"]).passed
    [row] = app.progress()
    assert (row.cause, row.attempts, row.reveals, row.solved) == ("peft_config_dropped", 2, 1, 0)
    table = invoke("progress").output
    assert re.search(r"oom_13b\s+peft_config_dropped\s+1\s+2\s+0\s+0\s+1\s+0\s+", table), table


def test_scores_give_every_lost_point_a_reason():
    seed = seed_with("peft_config_dropped")
    incident = app.incident("oom_13b", seed)
    full = score(app.grade(incident, "peft_config_dropped", ["pass_peft_config"]))
    assert (full.points, full.lost) == (100, [])
    busy = score(app.grade(incident, "peft_config_dropped", ["pass_peft_config", "enable_checkpointing"]), 11, 2)
    assert busy.points == 100 - 5 - 6 - 5 - 10
    reasons = "\n".join(busy.lines())
    assert "unneeded change 'enable_checkpointing'" in reasons and "11 probes used, 8 are free" in \
        reasons and "hint 1 taken" in reasons and "hint 2 taken" in reasons
    wrong = score(app.grade(incident, "checkpointing_not_enabled", ["zero3"]))
    assert wrong.points == 20 and len(wrong.lost) == 2
    assert "is not this incident's cause" in wrong.lines()[1]
    assert "does not meet the healthy bar" in wrong.lines()[2]


# --- progress commands --------------------------------------------------------------------

def test_reset_asks_first_and_clears():
    seed = seed_with("peft_config_dropped")
    app.check("oom_13b", seed, "peft_config_dropped", ["pass_peft_config"])
    home.record_event("hint", scenario="bad_lr", seed=1, cause="lr_too_low", stage=1)
    kept = invoke("reset", input="n\n")
    assert "Nothing changed" in kept.output and len(home.events()) == 2
    one = invoke("reset", "oom_13b", "--yes")
    assert "Forgot 1 recorded events (oom_13b)" in one.output
    assert [e["scenario"] for e in home.events()] == ["bad_lr"]
    assert invoke("reset", "oom_13", "--yes").exit_code == 2          # did you mean
    invoke("reset", input="y\n")
    assert home.events() == [] and "No progress yet" in invoke("progress").output


def test_play_without_an_id_continues_and_list_marks_solved(tmp_path):
    listed = invoke("list").output
    assert re.search(r"oom_13b\s+hard\s+2\s+0/2", listed)
    solve_everything_but("oom_13b")
    seed = seed_with("checkpointing_not_enabled")
    app.check("oom_13b", seed, "peft_config_dropped", ["pass_peft_config"])                    # not solved
    assert app.next_to_play() == ("oom_13b", seed)                          # continues it
    result = invoke("play", "--cause", "checkpointing_not_enabled", "--fix", "enable_checkpointing",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"Next unsolved: oom_13b, seed {seed}" in result.output
    assert "Score: 100/100" in result.output
    assert re.search(r"oom_13b\s+hard\s+2\s+1/2", invoke("list").output)
    listed = {s["id"]: s["solved_causes"] for s in json.loads(invoke("list", "--json").output)}
    assert listed["oom_13b"] == 1 and listed["nan_loss"] == 3


# --- the drill and the prompt -------------------------------------------------------------

def scripted(*answers):
    pending = list(answers)
    return lambda prompt: pending.pop(0)


@pytest.mark.parametrize("answers, expected", [
    (("plan", "", "1", "a", "optimizer states are half the plan"), "solved"),
    (("", "1", "d", "n", "too many GB of states"), "half-solved"),
    (("hint", "hint", "hint", "", "2", "e", "n", "activations?"), "not solved"),
], ids=["solved", "half-solved", "failed"])
def test_the_drill_rubric(answers, expected, tmp_path):
    from debugsim.sim.play import play
    seed = seed_with("peft_config_dropped")
    incident = app.incident("oom_13b", seed)
    said = []
    attempt = Attempt(limit_s=parse_duration("15m"))
    verdict = play(incident, tmp_path, said.append, scripted(*answers), attempt=attempt)
    text = "\n".join(said)
    assert f"Drill rubric: {expected}" in text and f"\"{answers[-1][:12]}" in text
    items = {i.name: i.mark for i in rubric(incident, verdict, attempt)}
    assert list(items) == ["cause named", "fix resolves", "evidence cited", "time", "hints"]
    if expected == "solved":
        assert set(items.values()) == {"pass"}
    if expected == "half-solved":
        assert items["cause named"] == "pass" and items["fix resolves"] == "fail"
        assert items["evidence cited"] == "fail"
    if expected == "not solved":
        assert items["hints"] == "fail" and items["cause named"] == "fail"
    lines = rubric_lines(incident, verdict, attempt, answers[-1])
    assert all("|" in line for line in lines[:2])                  # justification beside


def test_the_countdown_shows_at_every_prompt_and_time_runs_out(tmp_path):
    from debugsim.sim.play import play
    incident = app.incident("oom_13b", seed_with("peft_config_dropped"))
    prompts = []
    answers = iter(["1", "a", "because"])

    def ask(prompt):
        prompts.append(prompt)
        return next(answers)
    attempt = Attempt(limit_s=1.0, started=0.0)                # long over
    play(incident, tmp_path, lambda line: None, ask, attempt=attempt)
    assert prompts[0].startswith("[time is up] cause")         # no probe prompt when over
    items = {i.name: i for i in rubric(incident, app.grade(incident, "peft_config_dropped",
                                                              ["pass_peft_config"]), attempt)}
    assert items["time"].mark == "fail"
    assert Attempt(limit_s=900).countdown().startswith(("[15:00 left]", "[14:59 left]"))


def test_durations_and_deciding_probes():
    assert [parse_duration(t) for t in ("15m", "90s", "1h", "1m30s", "600")] == \
        [900, 90, 3600, 90, 600]
    for bad in ("soon", "0m", ""):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    nan = registry.get("nan_loss")
    assert deciding_probes(nan.cause("lr_too_high")) == ["table", "plot grad_norm"]
    assert deciding_probes(nan.cause("empty_label_division")) == ["table", "batch"]
    assert invoke("play", "oom_13b", "--timed", "soon").exit_code == 2


def test_tab_completion_offers_probes_then_signals_and_steps():
    words = ["help", "hint", "table", "plot", "batch"]
    assert candidates("pl", words, 40) == ["plot"]
    assert candidates("", words, 40)[:3] == ["done", "help", "hint"]
    assert candidates("plot grad", words, 40) == ["grad_norm"]
    assert candidates("batch 3", words, 40) == ["3", "30", "31", "32", "33", "34", "35", "36",
                                                "37", "38", "39"]
    assert "kv_cache=false" in candidates("samples kv", words, 40)


@pytest.mark.parametrize("argv", [["progress"], ["quiz", "--help"], ["drill", "--help"]])
def test_the_learners_fast_commands_do_not_import_torch(argv, own_home):
    import subprocess
    import sys
    code = ("import sys\nfrom debugsim import cli\n"
            "try:\n    cli.cli.main(sys.argv[1:], standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
