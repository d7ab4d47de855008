"""Instructor-led exercises: a class, per-learner variants, class grading, report, handout."""
import csv
import html
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from debugsim import cli
from debugsim.sim import app, assign, classgrade, classreport, classroom, handout, plots
from debugsim.sim.play import play

ROOT = Path(__file__).resolve().parents[1]
KEY = "tests-class-key-0123456789abcdef"
QUESTIONS = ("oom_13b", "nan_loss", "repetitive_decoding")


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """A class of 40 with a fixed key; three scenarios assigned (answer files are written by
    the tests: the assignment folders themselves are tested on oom_13b alone)."""
    folder = tmp_path_factory.mktemp("class") / "ml-debugging"
    made = classroom.init(folder, "ML debugging", learners=40, key=KEY)
    made.record_assignment(list(QUESTIONS), "2026-12-01")
    return classroom.load(folder)


def learner_with(klass, scenario_id, cause_id, skip=()):
    """The first learner whose variant of the scenario has this cause."""
    for learner in klass.learners:
        if learner not in skip and \
                assign.learner_incident(klass, learner, scenario_id).cause_id == cause_id:
            return learner
    raise AssertionError(f"no learner drew {cause_id}")


def answer(klass, learner, scenario_id, cause, fixes=(), settings=None, probes=(),
           submitted=1000.0):
    spec = app.scenario(scenario_id)
    data = assign.blank_answer(klass, learner, spec, klass.seed(learner, scenario_id), None)
    data.update(cause=cause, fixes=list(fixes), settings=dict(settings or {}),
                probes=list(probes), started=submitted - 600, submitted=submitted)
    return data


def hand_in(folder: Path, learner: str, name: str, data) -> Path:
    path = folder / learner / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_class_init_keeps_the_key_to_the_instructor(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("learner,name\nada,Ada L\nalan,Alan T\n")
    made = classroom.init(tmp_path / "c", "Week 3", roster=roster)
    key_file = tmp_path / "c" / "key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert made.learners == ["ada", "alan"]
    assert json.loads((tmp_path / "c" / "class.json").read_text())["format_version"] == 1
    assert classroom.load(tmp_path / "c").key == key_file.read_text().strip()
    assert made.learner_key("ada") != made.learner_key("alan") != made.key
    result = CliRunner().invoke(cli.cli, ["class", "init", str(tmp_path / "c"), "--name", "x",
                                          "--learners", "3"])
    assert result.exit_code == 2 and "already holds a class" in result.output
    roster.write_text("learner\nada\nbad id!\n")
    with pytest.raises(classroom.ClassError, match="row 3: 'bad id!'"):
        classroom.init(tmp_path / "d", "x", roster=roster)
    result = CliRunner().invoke(cli.cli, ["grade", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "not a class folder" in result.output


def test_neighbours_get_different_incidents_each_graded_against_their_own(klass):
    a = learner_with(klass, "oom_13b", "peft_config_dropped")
    b = learner_with(klass, "oom_13b", "checkpointing_not_enabled")
    mine, theirs = (assign.learner_incident(klass, who, "oom_13b") for who in (a, b))
    assert mine.incident.train_seed != theirs.incident.train_seed
    right_for_a = ("peft_config_dropped", ["pass_peft_config"])
    assert app.grade(mine, *right_for_a).passed
    assert not app.grade(theirs, *right_for_a).passed        # A's answer is wrong for B


def test_an_assignment_folder_holds_no_key_and_names_no_cause(klass):
    learner = klass.learners[0]
    folder = assign.write_assignment(klass, learner, "oom_13b", "2026-12-01")
    spec = app.scenario("oom_13b")
    cause = assign.learner_incident(klass, learner, "oom_13b").cause_id
    texts = {p: p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*")
             if p.is_file()}
    assert {"README.md", "answer.json"} <= {p.name for p in texts}
    for path, text in texts.items():
        assert klass.key not in text and klass.learner_key(learner) not in text, path
        if path.name != "answer.json":         # it lists every cause as a choice
            assert cause not in text and spec.cause(cause).title not in text, path
    assert f"debugsim play --assignment {folder.name}" in texts[folder / "README.md"]


def test_play_assignment_logs_probes_and_writes_the_answer(klass):
    learner = klass.learners[1]
    folder = assign.write_assignment(klass, learner, "oom_13b", None)
    replies = iter(["plan", "table", "", "1", "lroa", "lora", "it does not fit"])
    said = []
    path = assign.play_assignment(folder, said.append, lambda prompt: next(replies))
    data = json.loads(path.read_text())
    assert data["cause"] == "peft_config_dropped" and data["fixes"] == ["lora"]
    assert data["probes"] == ["plan"] and data["justification"] == "it does not fit"
    assert data["submitted"] >= data["started"]
    shown = "\n".join(said)
    assert "per-GPU memory" in shown and "not in this assignment's evidence" in shown
    assert "did you mean 'lora'" in shown
    assert "PASSED" not in shown and "Debrief" not in shown         # graded by the instructor


@pytest.fixture(scope="module")
def batch(klass, tmp_path_factory):
    """Nine kinds of answer files, graded in worker processes with a short time limit."""
    subs = tmp_path_factory.mktemp("submissions")
    full = learner_with(klass, "oom_13b", "peft_config_dropped")
    acts = learner_with(klass, "oom_13b", "checkpointing_not_enabled")
    other = learner_with(klass, "oom_13b", "peft_config_dropped", skip={full})
    shotgun = learner_with(klass, "oom_13b", "peft_config_dropped", skip={full, other})
    masked = learner_with(klass, "nan_loss", "empty_label_division")
    hang = learner_with(klass, "nan_loss", "lr_too_high")
    workaround = learner_with(klass, "repetitive_decoding", "stale_kv_cache")
    expected = {   # file -> (status, fix verdict, score, a reason)
        hand_in(subs, hang, "nan_loss.json",          # a fix in the envelope that never ends
                answer(klass, hang, "nan_loss", "lr_too_high",
                       settings={"grad_accum_steps": 100000})):
            ("error", "timed_out", 0.4, "did not finish within the time limit"),
        hand_in(subs, full, "oom_13b.json", answer(klass, full, "oom_13b", "peft_config_dropped",
                                                   ["pass_peft_config"], probes=["plan", "strategies"])):
            ("pass", "resolved", 1.0, "cause: right"),
        hand_in(subs, acts, "oom_13b.json",
                answer(klass, acts, "oom_13b", "peft_config_dropped", ["enable_checkpointing"])):
            ("fail", "resolved", 0.6, "cause: not right"),
        hand_in(subs, masked, "late/answer.json",
                answer(klass, masked, "nan_loss", "empty_label_division", ["skip_nonfinite"],
                       submitted=2000.0)):
            ("fail", "masked", 0.4, "hides the symptom"),
        hand_in(subs, workaround, "answer.json",
                answer(klass, workaround, "repetitive_decoding", "stale_kv_cache",
                       ["no_kv_cache"])):
            ("fail", "workaround", 0.7, "a workaround, not a fix"),
        hand_in(subs, shotgun, "oom_13b.json",
                answer(klass, shotgun, "oom_13b", "peft_config_dropped",
                       ["pass_peft_config", "enable_checkpointing", "adam8bit"])):
            ("fail", "shotgun", 0.7, "unneeded changes"),
        hand_in(subs, "learner40", "oom_13b.json", '{"cause": "peft_config_dropped", "fixes": [lora]'):
            ("error", "", 0.0, "not valid JSON"),
        hand_in(subs, acts, "nan_loss.json",
                answer(klass, acts, "nan_loss", "lr_too_high", ["lroa_scheduler"])):
            ("error", "", 0.0, "unknown fix 'lroa_scheduler'"),
        hand_in(subs, other, "oom_13b.json", answer(klass, full, "oom_13b", "peft_config_dropped",
                                                    ["pass_peft_config"])):      # A's file as B's
            ("error", "", 0.0, f"this is learner {full}'s answer file"),
    }
    edited = answer(klass, full, "oom_13b", "peft_config_dropped", ["pass_peft_config"])
    edited["assignment"]["learner"] = "learner39"                   # claims B's variant
    expected[hand_in(subs, "unsorted", "edited.json", edited)] = \
        ("error", "", 0.0, "token does not match learner39's variant")
    book = classgrade.grade(klass, [subs], jobs=2, time_limit=6.0)
    return subs, expected, book


def test_a_class_batch_gives_each_answer_its_score_and_reason(batch, klass):
    subs, expected, book = batch
    rows = {Path(r.submission): r for r in book.rows}
    assert len(rows) == len(expected)              # the hanging answer did not stop the batch
    for path, (status, verdict, score, reason) in expected.items():
        row = rows[path.resolve()]
        assert (row.status, row.fix_verdict, row.score) == (status, verdict, score), row
        assert any(reason in r for r in row.reasons), row.reasons
    grades = list(csv.DictReader((klass.folder / "grades" / "grades.csv").open()))
    assert len(grades) == len(expected) and set(grades[0]) == set(classgrade.CSV_COLUMNS)


def test_a_duplicate_is_superseded_and_a_second_grading_comes_from_the_cache(batch, klass):
    subs, expected, _ = batch
    full = learner_with(klass, "oom_13b", "peft_config_dropped")
    again = answer(klass, full, "oom_13b", "peft_config_dropped", ["pass_peft_config"], submitted=500.0)
    older = hand_in(subs, full, "resubmitted/answer.json", again)
    book = classgrade.grade(klass, [subs], jobs=2, time_limit=6.0)
    assert book.runs == 0                                           # all from the cache
    row = next(r for r in book.rows if Path(r.submission) == older.resolve())
    assert row.status == "superseded" and "submitted later" in row.reasons[0]
    results = json.loads((klass.folder / "grades" / full / "results.json").read_text())
    assert results["version"] == 2 and results["status"] == "pass"
    assert {t["status"] for t in results["tests"]} == {"pass", "skip"}
    feedback = (klass.folder / "grades" / full / "feedback.md").read_text()
    hidden = app.scenario("nan_loss").cause("empty_label_division").title
    masked_learner = learner_with(klass, "nan_loss", "empty_label_division")
    masked_feedback = (klass.folder / "grades" / masked_learner / "feedback.md").read_text()
    assert "PASS" in feedback and hidden not in masked_feedback
    older.unlink()


def test_the_class_report_has_a_chart_and_a_section_per_question(batch, klass):
    md, png = classreport.write_report(klass)
    text = md.read_text()
    assert png.stat().st_size > 10_000 and "![class report](report.png)" in text
    for question in QUESTIONS:
        assert f"## {question}" in text
    assert "| plan | 100% |" in text              # the one who passed used the plan probe


def test_a_handout_names_no_cause_and_the_key_comes_only_when_asked(tmp_path):
    spec = app.scenario("oom_13b")
    cause = spec.cause("checkpointing_not_enabled")
    written = handout.write_handout("oom_13b", 3, cause.id, "md", False, tmp_path / "h")
    text = written[0].read_text()
    assert [p.name for p in written] == ["handout.md"]
    assert cause.explanation.splitlines()[0] not in text and cause.id not in text
    assert "## Questions" in text and "![memory_plan](run/plots/memory_plan.png)" in text
    written = handout.write_handout("oom_13b", 3, cause.id, "html", True, tmp_path / "h")
    key = written[1].read_text()
    assert written[1].name == "answer-key.html" and html.escape(cause.tell) in key
    assert "data:image/png;base64," in written[0].read_text()


def test_present_mode_pauses_before_each_reveal(tmp_path):
    incident = app.incident("oom_13b", 5)
    title = incident.scenario.cause(incident.cause_id).title
    said, asked = [], []

    def ask(prompt):
        asked.append((prompt, len(said)))
        return ""

    play(incident, tmp_path / "p", said.append, ask, (), incident.cause_id, ["pass_peft_config"],
         present=True)
    prompts = [p for p, _ in asked]
    assert prompts == ["[press Enter to re-run with this fix]",
                       "[press Enter to reveal the cause]"]
    before_reveal = "\n".join(said[:asked[-1][1]])
    assert "What would you check next, and why?" in before_reveal
    assert f"The cause: {title}" not in before_reveal
    assert f"The cause: {title}" in "\n".join(said)


def test_large_text_plots_keep_about_their_pixel_size(tmp_path):
    import struct
    result = app.simulate("bad_lr", 0, settings={"steps": 6})
    normal = plots.signal(result, "loss", tmp_path / "normal.png")
    with plots.large_text(1.4):
        large = plots.signal(result, "loss", tmp_path / "large.png")
    after = plots.signal(result, "loss", tmp_path / "after.png")
    size = lambda p: struct.unpack(">II", p.read_bytes()[16:24])   # PNG header: width, height
    assert all(0.85 < a / b < 1.15 for a, b in zip(size(large), size(normal)))
    assert large.read_bytes() != normal.read_bytes() == after.read_bytes()


def test_class_commands_start_without_torch():
    code = ("import sys\nfrom debugsim import cli\n"
            "for argv in (['class', 'init', '--help'], ['assign', '--help'], "
            "['grade', '--help'], ['report', '--help'], ['handout', '--help']):\n"
            "    try:\n        cli.cli.main(argv, standalone_mode=False)\n"
            "    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
