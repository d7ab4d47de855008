"""Self-checking quizzes and quiz packs: scored right, every option explained, answers sealed.

Cheap: four planner incidents (instant) and one real training incident, simulated once for
the module; the CLI quiz runs on planner incidents only.
"""
import base64
import hashlib
import json
import random
import re
import time

import pytest
from click.testing import CliRunner

from debugsim import cli
from debugsim.sim import app, quizpack
from debugsim.sim import quiz as quizzes

from chromium import Browser, find as find_chromium

PACK_KEY = "tests-pack-key-0123456789"


def invoke(*args, input=None):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], input=input)


def _seeds(scenario, cause, count):
    return [s for s in range(300)
            if app.incident(scenario, s, key=PACK_KEY).cause_id == cause][:count]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Five questions: four planner incidents (both causes twice) and one real training run."""
    folder = tmp_path_factory.mktemp("quiz")
    picks = [("oom_13b", s) for cause in ("peft_config_dropped", "checkpointing_not_enabled")
             for s in _seeds("oom_13b", cause, 2)]
    picks.insert(2, ("nan_loss", _seeds("nan_loss", "lr_too_high", 1)[0]))
    incidents = [app.incident(s, seed, key=PACK_KEY) for s, seed in picks]
    rng = random.Random(7)
    made = [quizzes.build(n, p, folder / f"q{n}", rng) for n, p in enumerate(incidents, 1)]
    return incidents, [q for q, _ in made], [a for _, a in made], folder


def expected_points(prepared, part, text) -> float:
    """What an answer is worth, from the scenario's declared verdicts (not the quiz's code)."""
    spec = prepared.scenario
    if part == "cause":
        return float(text == spec.cause(prepared.cause_id).title)
    fix = next(f for f in spec.fixes if f.title == text)
    return {"resolved": 1.0, "workaround": 0.5}.get(
        spec.expected_verdict(prepared.cause_id, [fix.id]), 0.0)


def test_a_five_question_quiz_taken_with_piped_answers_scores_right(built):
    incidents, questions, _, _ = built
    answers, expected = [], 0.0
    for number, question in enumerate(questions):
        for part in question.parts:
            letter, text = part.options[(number + len(part.kind)) % len(part.options)]
            answers += ["z", "", letter]                        # bad answers are asked again
            expected += expected_points(incidents[number], part.kind, text)
    said = []
    pending = iter(answers)
    results = quizzes.take(questions, said.append, lambda prompt: next(pending))
    assert results["score"] == expected and results["max"] == 10
    assert 0 < expected < 10                                    # some right, some wrong
    text = "\n".join(said)
    assert text.count("answer with one letter from a to") == 20
    assert {t: v["max"] for t, v in results["by_topic"].items()} == {"memory": 8,
                                                                     "numerics": 2}


def test_feedback_explains_every_option_in_the_scenarios_words(built):
    incidents, questions, _, _ = built
    for prepared, question in zip(incidents, questions):
        spec = prepared.scenario
        for part in question.parts:
            for letter, _ in part.options:
                feedback = "\n".join(part.open(letter).lines)
                for other, text in part.options:
                    assert f"[{other}] {text}" in feedback, (question.id, other)
        cause_feedback = " ".join(question.parts[0].open("a").lines)
        cause = spec.cause(prepared.cause_id)
        assert " ".join(cause.explanation.split()) in cause_feedback
        assert f"Deciding evidence ({cause.signal.where})" in cause_feedback
        for other in spec.causes:
            if other.id != cause.id:
                assert other.tell in cause_feedback
        for fix in spec.fixes:
            assert fix.title in " ".join(question.parts[1].open("a").lines)


def test_the_right_fixes_are_the_declared_resolving_ones(built):
    incidents, questions, answers, _ = built
    for prepared, question, answer in zip(incidents, questions, answers):
        spec = prepared.scenario
        titles = dict(question.parts[1].options)
        right = {next(f.id for f in spec.fixes if f.title == titles[letter])
                 for letter, f in answer.feedback["fix"].items() if f.correct}
        assert right == {f for f in spec.resolves[prepared.cause_id]
                         if spec.expected_verdict(prepared.cause_id, [f]) == "resolved"}


def test_questions_have_neutral_titles_story_log_evidence_and_plots(built):
    incidents, questions, _, _ = built
    training = questions[2]
    assert training.title == "Question 3" and "nan_loss" not in training.title
    assert "step" in training.log and "loss" in training.log
    assert any(e.startswith("probe> plot grad_norm") for e in training.evidence) or \
        any("grad_norm" in p for p in training.plots)
    assert len(training.plots) >= 3 and all(p.endswith(".png") for p in training.plots)
    planner = questions[0]
    assert planner.evidence[0].startswith("probe> plan") and planner.plots


def test_the_quiz_command_with_piped_answers(tmp_path):
    picks = quizzes.pick(5, "llm", None, 11)
    assert {s for s, _ in picks} == {"oom_13b"}
    result = invoke("quiz", "--count", 5, "--tags", "llm", "--seed", 11, "--out", tmp_path,
                    input="x\na\na\n" * 5)
    assert result.exit_code == 0, result.output
    menus = re.findall(r"Which is the root cause\?\n  \[a\] ([^\n]*)\n.*?Which fix\?\n"
                       r"  \[a\] ([^\n]*)\n", result.output, re.S)
    assert len(menus) == 5
    expected = 0.0
    for (scenario, seed), (cause_text, fix_text) in zip(picks, menus):
        prepared = app.incident(scenario, seed, key=quizzes.quiz_key(11))
        expected += expected_points(prepared, "cause", cause_text)
        expected += expected_points(prepared, "fix", fix_text)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["score"] == expected and f"Score: {expected:g} / 10" in result.output
    assert invoke("quiz", "--difficulty", "impossible").exit_code == 2
    assert invoke("quiz", "--tags", "nosuchtag").exit_code == 2


# --- packs -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packs(built, tmp_path_factory):
    _, questions, answers, _ = built
    root = tmp_path_factory.mktemp("packs")
    made = {}
    for fmt in ("md", "html"):
        quizpack.make(questions, answers, root / fmt, fmt, PACK_KEY, root / f"key-{fmt}.json")
        made[fmt] = root / fmt
    return made, root


def test_a_pack_is_taken_offline_fast_and_scores_right(packs, built):
    incidents, _, _, _ = built
    made, root = packs
    key = json.loads((root / "key-md.json").read_text())
    right = "".join(f"{min(l for l, o in e['options']['cause'].items() if o['correct'])}\n"
                    f"{min(l for l, o in e['options']['fix'].items() if o['correct'])}\n"
                    for e in key)
    started = time.perf_counter()
    result = invoke("quiz", "take", made["md"], "--results", root / "taken.json",
                    input=right)
    per_question = (time.perf_counter() - started) / 5
    assert result.exit_code == 0, result.output
    assert "Score: 10 / 10" in result.output and per_question < 0.5
    assert [e["scenario"] for e in key] == [p.scenario.id for p in incidents]
    assert json.loads((root / "taken.json").read_text())["score"] == 10
    assert "Question 3 of 5" in (made["md"] / "quiz.md").read_text()


def _pack_files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _embedded(folder):
    """The pack data inside a file: pack.json, or the JSON the HTML page carries."""
    if (folder / "quiz.html").exists():
        page = (folder / "quiz.html").read_text()
        payload = re.search(r'<script type="application/json" id="pack">(.*?)</script>', page,
                            re.S).group(1)
        return [json.loads((folder / "pack.json").read_text()),
                json.loads(payload.replace("<\\/", "</"))]
    return [json.loads((folder / "pack.json").read_text())]


def _told(lines, options) -> list[str]:
    """What feedback lines say beyond naming an option: each line's own words, and each
    option paired with what is said about it ("[b] <title>: resolves it")."""
    told = []
    for line in lines:
        named = next((f"[{o['id']}] {o['text']}" for o in options
                      if f"[{o['id']}] {o['text']}" in line), None)
        rest = line.split(named, 1)[1] if named else line
        if len(rest.strip(" .:")) > 15:
            told.append(rest.strip(" .:")[:60])
        if named:
            told.append(line[:line.index(named) + len(named) + 12])
    return told


def recover_answers(folder, answers) -> list[str]:
    """Try to read the key from the pack's files alone; what was found (empty: nothing)."""
    files = _pack_files(folder)
    found = []
    for data in _embedded(folder):                   # A: anything beside the options
        if set(data) != {"format", "version", "salt", "questions"}:
            found.append(f"extra top-level keys {set(data)}")
        for q in data["questions"]:
            for part in q["parts"]:
                sizes = set()
                for option in part["options"]:
                    if set(option) != {"id", "text", "sealed"}:
                        found.append(f"{q['id']} option {option['id']} carries {set(option)}")
                    sizes.add(len(option["sealed"]))
                if len(sizes) != 1:
                    found.append(f"{q['id']} {part['kind']}: sealed sizes differ {sizes}")
    salt = bytes.fromhex(_embedded(folder)[0]["salt"])
    for number, answer in enumerate(answers, 1):     # B: the feedback or the cause in clear
        qid = f"q{number}"
        clear = [answer.cause, answer.scenario]
        shown = {p["kind"]: p["options"]
                 for p in _embedded(folder)[0]["questions"][number - 1]["parts"]}
        for part, options in answer.feedback.items():
            for letter, feedback in options.items():
                clear += _told(feedback.lines, shown[part])
                for text in (letter, f"{qid}{letter}", f"{qid}/{part}/{letter}",
                             f"{qid}:{part}:{letter}", f"{qid}-{part}-{letter}"):
                    for name in ("md5", "sha1", "sha256", "sha512"):   # C: hashes of options
                        digest = hashlib.new(name, text.encode()).digest()
                        clear += [digest.hex(), base64.b64encode(digest).decode()]
                key = quizpack.option_key(salt, qid, part, letter)  # the salted hash itself
                clear += [key.hex(), base64.b64encode(key).decode()]
        for path, data in files.items():
            lowered = data.lower()
            for secret in clear:
                if secret.lower().encode() in lowered:
                    found.append(f"{path.name}: {secret[:40]!r}")
    for path, data in files.items():                 # E: image metadata
        if path.suffix == ".png":
            chunks = quizpack.png_chunks(data)
            if {b"tEXt", b"zTXt", b"iTXt", b"tIME"} & set(chunks):
                found.append(f"{path.name}: text metadata {chunks}")
    return found


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_the_pack_alone_does_not_give_the_answers_away(packs, built, fmt):
    _, _, answers, _ = built
    made, _ = packs
    assert recover_answers(made[fmt], answers) == []


def test_the_leak_attacks_catch_leaky_packs(packs, built, tmp_path):
    """The attacks above are not blind: three ways of leaking the key, each caught."""
    import shutil
    _, _, answers, _ = built
    made, _ = packs
    for leak in ("flag", "clear", "hash"):
        copy = tmp_path / leak
        shutil.copytree(made["md"], copy)
        data = json.loads((copy / "pack.json").read_text())
        right = next(l for l, f in answers[0].feedback["cause"].items() if f.correct)
        option = next(o for o in data["questions"][0]["parts"][0]["options"] if o["id"] == right)
        if leak == "flag":
            option["correct"] = True
        elif leak == "clear":
            (copy / "notes.txt").write_text(answers[0].feedback["cause"][right].lines[0])
        else:
            option["check"] = hashlib.sha256(f"q1/cause/{right}".encode()).hexdigest()
        (copy / "pack.json").write_text(json.dumps(data))
        assert recover_answers(copy, answers), leak


def test_a_sealed_option_opens_only_with_its_own_key(packs):
    made, _ = packs
    data = json.loads((made["md"] / "pack.json").read_text())
    salt = bytes.fromhex(data["salt"])
    first, second = data["questions"][0]["parts"][0]["options"][:2]
    opened = quizpack.unseal(quizpack.option_key(salt, "q1", "cause", first["id"]),
                             first["sealed"])
    assert json.loads(opened)["lines"]
    with pytest.raises(quizpack.PackError):
        quizpack.unseal(quizpack.option_key(salt, "q1", "cause", second["id"]),
                        first["sealed"])


def test_option_order_is_shuffled_so_a_position_means_nothing(built):
    incidents, _, _, _ = built
    rng = random.SystemRandom()
    right_letters = set()
    for _ in range(64):
        _, feedback = quizzes._cause_part(incidents[0], rng)
        right_letters |= {l for l, f in feedback.items() if f.correct}
    assert right_letters == {"a", "b"}


def test_pack_errors_are_one_line(packs, built, tmp_path):
    _, questions, answers, _ = built
    made, _ = packs
    with pytest.raises(quizzes.QuizError, match="outside the pack"):
        quizpack.make(questions, answers, tmp_path / "p", "md", PACK_KEY,
                      tmp_path / "p" / "key.json")
    assert invoke("quiz", "take", tmp_path).exit_code == 2              # no pack.json
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = json.loads((made["md"] / "pack.json").read_text())
    for option in data["questions"][0]["parts"][0]["options"]:
        raw = bytearray(base64.b64decode(option["sealed"]))
        raw[20] ^= 1
        option["sealed"] = base64.b64encode(bytes(raw)).decode()
    (damaged / "pack.json").write_text(json.dumps(data))
    result = invoke("quiz", "take", damaged, "--results", tmp_path / "r.json",
                    input="a\na\n" * 5)
    assert result.exit_code == 2 and "damaged" in result.output


@pytest.mark.skipif(not find_chromium(), reason="no chromium to open the HTML in")
def test_the_html_pack_unseals_in_a_real_browser(packs, built):
    _, _, answers, _ = built
    made, _ = packs
    right = next(l for l, f in answers[0].feedback["cause"].items() if f.correct)
    wrong = next(l for l, f in answers[0].feedback["cause"].items() if not f.correct)
    fix_right = next(l for l, f in answers[0].feedback["fix"].items() if f.correct)
    with Browser() as browser:
        browser.open((made["html"] / "quiz.html").resolve().as_uri())
        assert browser.js("document.querySelectorAll('section').length") == 5
        assert browser.js("document.querySelectorAll('img[src^=\"data:image/png\"]').length") >= 5
        browser.js(f"document.getElementById('q1-cause-{wrong}').click()")
        assert browser.js("document.querySelectorAll('.feedback').length") == 0
        browser.js(f"document.getElementById('q1-cause-{right}').click()")     # locked
        browser.js(f"document.getElementById('q1-fix-{fix_right}').click()")
        shown = browser.js("[...document.querySelectorAll('#q1 .feedback')]"
                           ".map(e => e.textContent)")
        assert shown[0].startswith(f"Your cause: [{wrong}] — not right")
        assert shown[1].startswith(f"Your fix: [{fix_right}] — right (+1)")
        assert answers[0].feedback["cause"][wrong].lines[0] in shown[0]
        assert browser.js("document.getElementById('score').textContent").startswith(
            "Score: 1 / 2 answered")
