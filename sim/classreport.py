"""The class report: how a class did on each question, from the last grading (grades.json).

    DIR/report/report.md    per question: success rate, the most common wrong causes and
                            fixes, the probes used by those who got it right vs wrong, time taken
    DIR/report/report.png   the same at a glance, four panels

For the instructor: it names the hidden causes (the class folder is the instructor's).
"""
from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from .classroom import ClassError, Classroom
from .files import write_atomic

RIGHT_COLOR, WRONG_COLOR, CAUSE_COLOR = "#2ca02c", "#d62728", "#1f77b4"


def load_rows(classroom: Classroom) -> list[dict]:
    path = classroom.folder / "grades" / "grades.json"
    if not path.exists():
        raise ClassError(f"no grades in {classroom.folder} yet: run `debugsim grade` first")
    rows = json.loads(path.read_text())["rows"]
    return [r for r in rows if r["status"] != "superseded" and r["question"]]


def probe_name(line: str) -> str:
    return line.split()[0] if line.split() else line


def summarize(rows: list[dict]) -> dict:
    """Per question: counts, rates, wrong causes and fixes, probes right vs wrong, minutes."""
    questions = {}
    for question in sorted({r["question"] for r in rows}):
        mine = [r for r in rows if r["question"] == question]
        graded = [r for r in mine if r["fix_verdict"]]
        right = [r for r in mine if r["status"] == "pass"]
        wrong = [r for r in mine if r["status"] != "pass"]
        wrong_causes = Counter(f"{r['named_cause'] or '(none)'} (was {r['true_cause']})"
                               for r in graded if not r["cause_correct"])
        wrong_fixes = Counter(
            " + ".join([*r["fixes"], *(f"{k}={v}" for k, v in r["settings"].items())])
            or "(none)" for r in graded if r["fix_verdict"] != "resolved")
        verdicts = Counter(r["fix_verdict"] for r in graded)
        questions[question] = {
            "answers": len(mine), "graded": len(graded), "errors": len(mine) - len(graded),
            "passed": len(right), "pass_rate": len(right) / len(mine) if mine else 0.0,
            "cause_rate": sum(bool(r["cause_correct"]) for r in mine) / len(mine),
            "mean_score": statistics.fmean(r["score"] for r in mine),
            "verdicts": dict(verdicts.most_common()),
            "wrong_causes": wrong_causes.most_common(3),
            "wrong_fixes": wrong_fixes.most_common(3),
            "probes_right": _probe_share(right), "probes_wrong": _probe_share(wrong),
            "minutes_right": [r["minutes"] for r in right if r["minutes"] is not None],
            "minutes_wrong": [r["minutes"] for r in wrong if r["minutes"] is not None],
        }
    return questions


def _probe_share(rows: list[dict]) -> dict[str, float]:
    """Share of these learners who used each probe at least once."""
    if not rows:
        return {}
    used = Counter(name for r in rows for name in {probe_name(p) for p in r["probes"]})
    return {name: count / len(rows) for name, count in used.most_common()}


def _minutes(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.0f} min ({min(values):.0f}-{max(values):.0f})"


def report_md(name: str, questions: dict, chart: str) -> str:
    lines = [f"# Class report: {name}", "", f"![class report]({chart})", ""]
    lines += ["| question | answers | passed | cause right | mean score | fix verdicts | "
              "could not be graded |", "|---|---|---|---|---|---|---|"]
    for question, q in questions.items():
        verdicts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in q["verdicts"].items())
        lines.append(f"| {question} | {q['answers']} | {q['passed']} ({q['pass_rate']:.0%}) | "
                     f"{q['cause_rate']:.0%} | {q['mean_score']:.2f} | {verdicts} | "
                     f"{q['errors']} |")
    for question, q in questions.items():
        lines += ["", f"## {question}", "", "Most common wrong causes (named, then the real one):"]
        lines += [f"- {text}: {count}" for text, count in q["wrong_causes"]] or ["- none"]
        lines += ["", "Most common fixes that did not resolve it:"]
        lines += [f"- {text}: {count}" for text, count in q["wrong_fixes"]] or ["- none"]
        lines += ["", "Probes used (share of learners who used each at least once):", "",
                  "| probe | passed | did not pass |", "|---|---|---|"]
        names = sorted(set(q["probes_right"]) | set(q["probes_wrong"]),
                       key=lambda n: -q["probes_right"].get(n, 0))
        lines += [f"| {n} | {q['probes_right'].get(n, 0):.0%} | {q['probes_wrong'].get(n, 0):.0%} |"
                  for n in names] or ["| (none logged) | | |"]
        lines += ["", f"Time taken: passed {_minutes(q['minutes_right'])}; did not pass "
                      f"{_minutes(q['minutes_wrong'])}."]
    lines.append("")
    return "\n".join(lines)


def chart(questions: dict, path: Path) -> Path:
    """Four panels: success per question, wrong causes, probes right vs wrong, time taken."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(13, 9), dpi=90)
    FigureCanvasAgg(fig)
    (success, causes), (used, minutes) = fig.subplots(2, 2)
    names = list(questions)
    x = range(len(names))
    success.bar([i - 0.2 for i in x], [questions[n]["cause_rate"] for n in names], 0.4,
                color=CAUSE_COLOR, label="cause right")
    success.bar([i + 0.2 for i in x], [questions[n]["pass_rate"] for n in names], 0.4,
                color=RIGHT_COLOR, label="passed (cause right, fix resolved)")
    success.set_xticks(list(x), names)
    success.set_ylim(0, 1.3)
    success.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    success.set_ylabel("share of the class")
    success.set_title("Success per question")
    success.legend(loc="upper center", ncol=2, fontsize=9, frameon=False)
    for i, n in enumerate(names):
        success.text(i + 0.2, questions[n]["pass_rate"] + 0.02, f"{questions[n]['passed']}/"
                     f"{questions[n]['answers']}", ha="center", fontsize=9)
    wrong = [(f"{n}: named {text.replace(' (was ', ', was ').rstrip(')')}", count)
             for n in names for text, count in questions[n]["wrong_causes"]][:8]
    _labelled_bars(causes, wrong, WRONG_COLOR, "Most common wrong causes", "learners")
    rows = [(n, p) for n in names for p in sorted(set(questions[n]["probes_right"])
                                                  | set(questions[n]["probes_wrong"]))]
    y = list(range(len(rows)))[::-1]
    used.barh([i + 0.2 for i in y], [questions[n]["probes_right"].get(p, 0) for n, p in rows],
              0.4, color=RIGHT_COLOR, label="passed")
    used.barh([i - 0.2 for i in y], [questions[n]["probes_wrong"].get(p, 0) for n, p in rows],
              0.4, color=WRONG_COLOR, label="did not pass")
    used.set_yticks(y, [f"{n}: {p}" for n, p in rows], fontsize=8)
    used.set_xlim(0, 1.0)
    used.set_xlabel("share of learners who used the probe")
    used.set_title("Probes used: passed vs did not pass")
    used.legend(loc="lower right", fontsize=8)
    data, labels, colors = [], [], []
    for n in names:
        for key, label, color in (("minutes_right", "passed", RIGHT_COLOR),
                                  ("minutes_wrong", "did not", WRONG_COLOR)):
            data.append(questions[n][key] or [float("nan")])
            labels.append(f"{n}\n{label}")
            colors.append(color)
    boxes = minutes.boxplot(data, patch_artist=True, widths=0.6)
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.5)
    minutes.set_xticks(range(1, len(labels) + 1), labels, fontsize=8, rotation=25, ha="right")
    minutes.set_ylabel("minutes (answer file opened to saved)")
    minutes.set_title("Time taken")
    fig.subplots_adjust(left=0.2, right=0.98, top=0.95, bottom=0.13, hspace=0.42, wspace=0.12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _labelled_bars(ax, items: list[tuple[str, int]], color: str, title: str,
                   xlabel: str) -> None:
    """Horizontal bars with their (long) labels written above each bar, inside the axes."""
    ax.set_title(title)
    ax.set_yticks([])
    if not items:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    top = max(c for _, c in items)
    for i, (text, count) in enumerate(items):
        y = len(items) - 1 - i
        ax.barh(y, count, 0.45, color=color)
        ax.text(top * 0.01, y + 0.3, f"{text}: {count}", fontsize=8, va="bottom")
    ax.set_ylim(-0.5, len(items) - 0.1)
    ax.set_xlim(0, top * 1.05)
    ax.set_xlabel(xlabel)
    ax.xaxis.get_major_locator().set_params(integer=True)


def write_report(classroom: Classroom) -> tuple[Path, Path]:
    questions = summarize(load_rows(classroom))
    if not questions:
        raise ClassError("the last grading holds no gradable answers to report on")
    out = classroom.folder / "report"
    png = chart(questions, out / "report.png")
    md = out / "report.md"
    write_atomic(md, report_md(classroom.name, questions, png.name))
    return md, png
