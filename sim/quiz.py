"""Self-checking diagnosis quizzes: incidents drawn over the catalogue, asked as multiple choice.

Each question is one simulated incident under a neutral title ("Question 3": the scenario id
would be a hint): the story, what changed since the last good run, a log excerpt, the output of
the probes where the scenario's tells show (those of *every* cause, so the evidence shown does
not point at the answer), and the plots as PNG files. Two parts: which cause, and which fix,
with options from the scenario's causes and fixes in a shuffled order. Whether a fix is right
comes from the scenario's declared verdicts (`Scenario.expected_verdict`), which the verdict
matrix proves by re-running: a resolving fix scores 1, a workaround 1/2, anything else 0.

After both parts are answered, the feedback explains every option in the scenario's own words
(the cause's explanation, each other cause's tell, each fix's verdict) and points at the
deciding evidence. The same `take` runs a quiz simulated now or a pack made earlier
(`sim/quizpack.py`, whose options unseal their feedback only when chosen).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import probes, registry
from .drill import deciding_probes
from .engines.base import Prepared
from .files import write_json

Say = Callable[[str], None]
Ask = Callable[[str], "str | None"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
FIX_POINTS = {"resolved": 1.0, "workaround": 0.5}
LONG_LOG, LOG_HEAD, LOG_TAIL = 60, 20, 10


class QuizError(ValueError):
    """A quiz cannot be drawn, made or taken as asked (one line, for the user)."""


@dataclass
class Feedback:
    """What answering a part with one option unlocks: whether it was right, and the
    explanation of every option of the part (the same text whichever option was picked)."""
    correct: bool
    points: float
    lines: list[str]

    def to_dict(self) -> dict:
        return {"correct": self.correct, "points": self.points, "lines": self.lines}

    @classmethod
    def from_dict(cls, data: dict) -> "Feedback":
        return cls(bool(data["correct"]), float(data["points"]), list(data["lines"]))


@dataclass
class Part:
    kind: str                                  # cause | fix
    prompt: str
    options: list[tuple[str, str]]             # (letter, text), in the order shown
    open: Callable[[str], Feedback]            # the feedback for the chosen letter


@dataclass
class Question:
    id: str                                    # q1, q2, ...
    title: str
    topics: list[str]                          # the scenario's main tag (the breakdown)
    story: str
    changes: list[str]
    log: str
    evidence: list[str]                        # probe outputs: "probe> LINE\n..."
    plots: list[str]                           # PNG paths
    parts: list[Part]


@dataclass
class Answer:
    """The key of one question, kept apart from what the learner sees."""
    scenario: str
    seed: int
    cause: str
    deciding: str                              # where the tell shows
    feedback: dict[str, dict[str, Feedback]] = field(default_factory=dict)  # part -> letter ->


# --- drawing incidents ------------------------------------------------------------------

def quiz_key(seed: int) -> str:
    """The live quiz's incident key: the learner's key, kept apart from play's incidents."""
    from .home import user_key
    return hmac.new(user_key().encode(), f"quiz/{seed}".encode(), hashlib.sha256).hexdigest()


def pick(count: int, tags: str | None, difficulty: str | None, seed: int) -> list[tuple[str, int]]:
    """`count` (scenario, seed) pairs over the catalogue (tags: comma-separated, any of them),
    each scenario once before any repeats."""
    if count < 1:
        raise QuizError("--count must be at least 1")
    wanted = {t.strip() for t in (tags or "").split(",") if t.strip()}
    levels = {d.strip() for d in (difficulty or "").split(",") if d.strip()}
    catalogue = registry.all_scenarios()
    known_levels = {s.difficulty for s in catalogue}
    if levels - known_levels:
        raise QuizError(f"unknown difficulty {', '.join(sorted(levels - known_levels))}; "
                             f"choose from {', '.join(sorted(known_levels))}")
    pool = [s.id for s in catalogue if (not wanted or wanted & set(s.tags))
            and (not levels or s.difficulty in levels)]
    if not pool:
        raise QuizError("no scenario matches those tags and difficulty; tags: "
                             + ", ".join(sorted({t for s in catalogue for t in s.tags})))
    rng = random.Random(seed)
    picks: list[tuple[str, int]] = []
    while len(picks) < count:
        rng.shuffle(pool)
        picks += [(s, rng.randrange(10_000)) for s in pool]
    return picks[:count]


# --- building questions -----------------------------------------------------------------

def _neutral(prepared: Prepared, number: int) -> Prepared:
    """The same run under a neutral name, for plots whose titles name the scenario."""
    spec = dataclasses.replace(prepared.scenario, id=f"question {number}")
    return dataclasses.replace(prepared, incident=dataclasses.replace(prepared.incident,
                                                                      scenario=spec))


def _log_excerpt(result) -> str:
    table = probes.find("table", result.prepared.scenario)
    summary = "\n".join(result.prepared.engine.summary_lines(result))
    if table is None:
        return summary
    if len(result.records) <= LONG_LOG:
        return probes.log_table(result) + "\n" + summary
    return (probes.log_table(result, 0, LOG_HEAD - 1) + "\n  ...\n"
            + probes.log_table(result, -LOG_TAIL) + "\n" + summary)


def _evidence(result, number: int, plot_dir: Path) -> tuple[list[str], list[str]]:
    """Every probe where any of the scenario's causes shows its tell, run on this incident."""
    scenario = result.prepared.scenario
    neutral = dataclasses.replace(result, prepared=_neutral(result.prepared, number))
    texts: list[str] = []
    before = set(plot_dir.glob("*.png")) if plot_dir.exists() else set()
    lines = []
    for cause in scenario.causes:
        lines += [line for line in deciding_probes(cause) if line not in lines]
    for line in lines:
        name, *args = line.split()
        probe = probes.find(name, scenario)
        if probe is None or name == "table":           # the table is the log excerpt
            continue
        try:
            text = probe.run(neutral if probe.NAME == "plot" else result, args, plot_dir)
        except (probes.ProbeError, ValueError, KeyError):
            continue                                    # a probe that needs a step number
        text = "\n".join(t for t in text.splitlines() if not t.startswith("wrote "))
        if text.strip():
            texts.append(f"probe> {line}\n{text}")
    made = sorted(set(plot_dir.glob("*.png")) - before) if plot_dir.exists() else []
    return texts, [str(p) for p in made]


def _cause_part(prepared: Prepared, rng) -> tuple[Part, dict[str, Feedback]]:
    scenario = prepared.scenario
    order = list(scenario.causes)
    rng.shuffle(order)
    letters = {c.id: LETTERS[i] for i, c in enumerate(order)}
    cause = scenario.cause(prepared.cause_id)
    lines = [f"The cause is [{letters[cause.id]}] {cause.title}.",
             " ".join(cause.explanation.split()),
             f"Deciding evidence ({cause.signal.where if cause.signal else 'the run'}): "
             f"{cause.tell}."]
    for other in order:
        if other.id != cause.id:
            lines.append(f"[{letters[other.id]}] {other.title}: not this incident. It would "
                         f"show: {other.tell}.")
    feedback = {letters[c.id]: Feedback(c.id == cause.id, float(c.id == cause.id), lines)
                for c in order}
    part = Part("cause", "Which is the root cause?",
                [(letters[c.id], c.title) for c in order], feedback.__getitem__)
    return part, feedback


def _fix_verdict_line(scenario, cause_id: str, fix) -> tuple[str, float]:
    verdict = scenario.expected_verdict(cause_id, [fix.id])
    if verdict == "resolved":
        return "resolves it: the re-run with this fix is healthy.", 1.0
    if verdict == "workaround":
        return f"a workaround: the symptom goes, at a cost ({fix.cost}).", 0.5
    if verdict == "masked":
        return "hides the symptom: the bad steps are skipped, the bug stays.", 0.0
    if fix.id in scenario.harms:
        return "breaks even a healthy run (a trap).", 0.0
    other = [c.title for c in scenario.causes
             if c.id != cause_id and fix.id in scenario.resolves.get(c.id, ())]
    if other:
        return f"does not resolve it: it is the fix for another cause ({other[0]}).", 0.0
    return "does not resolve it: the re-run still fails the healthy bar.", 0.0


def _fix_part(prepared: Prepared, rng) -> tuple[Part, dict[str, Feedback]]:
    scenario = prepared.scenario
    order = list(scenario.fixes)
    rng.shuffle(order)
    judged = {f.id: _fix_verdict_line(scenario, prepared.cause_id, f) for f in order}
    lines = [f"[{LETTERS[i]}] {f.title}: {judged[f.id][0]}" for i, f in enumerate(order)]
    feedback = {LETTERS[i]: Feedback(judged[f.id][1] == 1.0, judged[f.id][1], lines)
                for i, f in enumerate(order)}
    part = Part("fix", "Which fix?", [(LETTERS[i], f.title) for i, f in enumerate(order)],
                feedback.__getitem__)
    return part, feedback


def build(number: int, prepared: Prepared, folder: Path, rng, changes: list[str] = ()
          ) -> tuple[Question, Answer]:
    """One question from an incident: simulated (or served from the run cache), its plots and
    evidence written under `folder/plots`; `changes` is what changed since the last good run."""
    from . import runs
    result = runs.execute(prepared)
    plot_dir = folder / "plots"
    plots = [str(p) for p in prepared.engine.write_plots(
        dataclasses.replace(result, prepared=_neutral(prepared, number)), folder)]
    evidence, made = _evidence(result, number, plot_dir)
    cause_part, cause_feedback = _cause_part(prepared, rng)
    fix_part, fix_feedback = _fix_part(prepared, rng)
    scenario = prepared.scenario
    cause = scenario.cause(prepared.cause_id)
    question = Question(f"q{number}", f"Question {number}", list(scenario.tags[:1]),
                        scenario.story, list(changes), _log_excerpt(result), evidence,
                        plots + [p for p in made if p not in plots], [cause_part, fix_part])
    answer = Answer(scenario.id, prepared.seed, cause.id,
                    cause.signal.where if cause.signal else "",
                    {"cause": cause_feedback, "fix": fix_feedback})
    return question, answer


def simulate(incidents: list[Prepared], out: Path, say: Say, rng,
             changes: Callable[[Prepared], list[str]] = lambda prepared: []
             ) -> tuple[list[Question], list[Answer]]:
    """The questions for these incidents, simulated now (progress is said)."""
    questions, answers = [], []
    for number, prepared in enumerate(incidents, 1):
        say(f"  simulating incident {number}/{len(incidents)} ...")
        started = time.monotonic()
        question, answer = build(number, prepared, out / f"q{number}", rng, changes(prepared))
        questions.append(question)
        answers.append(answer)
        say(f"    done in {time.monotonic() - started:.1f} s")
    return questions, answers


# --- taking a quiz ----------------------------------------------------------------------

def question_lines(question: Question, count: int) -> list[str]:
    lines = [f"\n=== {question.title} of {count} ===", question.story, ""]
    if question.changes:
        lines += [*question.changes, ""]
    lines += ["Log excerpt:", question.log, ""]
    for text in question.evidence:
        lines += [text, ""]
    if question.plots:
        lines += ["Plots:", *(f"  {p}" for p in question.plots), ""]
    return lines


def _ask_part(part: Part, say: Say, ask: Ask) -> str:
    say(part.prompt)
    for letter, text in part.options:
        say(f"  [{letter}] {text}")
    letters = [letter for letter, _ in part.options]
    while True:
        answer = ask(f"{part.kind} ({letters[0]}-{letters[-1]})>")
        if answer is None:
            raise QuizError("no answer given (input ended)")
        answer = answer.strip().lower()
        if answer in letters:
            return answer
        say(f"  answer with one letter from {letters[0]} to {letters[-1]}")


def take(questions: list[Question], say: Say, ask: Ask) -> dict:
    """Ask every question (both parts, then the feedback on every option); the results."""
    results = []
    for question in questions:
        say("\n".join(question_lines(question, len(questions))))
        picked = {part.kind: _ask_part(part, say, ask) for part in question.parts}
        say("")
        answered = {}
        for part in question.parts:
            feedback = part.open(picked[part.kind])
            mark = "right" if feedback.correct else ("half right" if feedback.points else
                                                     "not right")
            say(f"Your {part.kind}: [{picked[part.kind]}] — {mark} (+{feedback.points:g})")
            for line in feedback.lines:
                say(textwrap.fill(line, 96, initial_indent="  ", subsequent_indent="    "))
            answered[part.kind] = {"answer": picked[part.kind], "correct": feedback.correct,
                                   "points": feedback.points}
        results.append({"id": question.id, "title": question.title,
                        "topics": question.topics, **answered})
    return summarize(results)


def summarize(results: list[dict]) -> dict:
    score = sum(r[k]["points"] for r in results for k in ("cause", "fix"))
    by_topic: dict[str, dict[str, float]] = {}
    for result in results:
        for topic in result["topics"]:
            tally = by_topic.setdefault(topic, {"score": 0.0, "max": 0.0})
            tally["score"] += result["cause"]["points"] + result["fix"]["points"]
            tally["max"] += 2
    return {"score": score, "max": 2 * len(results), "by_topic": by_topic,
            "questions": results}


def result_lines(results: dict) -> list[str]:
    lines = [f"\nScore: {results['score']:g} / {results['max']} "
             f"({results['score'] / results['max']:.0%})", "By topic:"]
    for topic, tally in sorted(results["by_topic"].items()):
        lines.append(f"  {topic:<22} {tally['score']:g} / {tally['max']:g}")
    return lines


def write_results(results: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**results, "taken_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return path


def key_entries(questions: list[Question], answers: list[Answer], key: str) -> list[dict]:
    """The answer key (instructors): per question its incident, cause and right options."""
    entries = []
    for question, answer in zip(questions, answers):
        entries.append({
            "question": question.id, "scenario": answer.scenario, "seed": answer.seed,
            "key": key, "cause_id": answer.cause, "deciding_evidence": answer.deciding,
            "options": {part: {letter: {"correct": f.correct, "points": f.points}
                               for letter, f in feedback.items()}
                        for part, feedback in answer.feedback.items()}})
    return entries


def dumps_key(entries: list[dict]) -> str:
    return json.dumps(entries, indent=2) + "\n"
