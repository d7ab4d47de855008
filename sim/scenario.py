"""What a scenario is: a symptom, the hidden causes behind it, the fixes, and what healthy means.

Scenario modules in `scenarios/` build these frozen specs and nothing else. Everything here is
plain data (no torch), so listing and showing scenarios stays instant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


# A callback factory: a class (or any zero-argument callable) that builds a fresh callback per run.
CallbackFactory = Callable[[], Any]


@dataclass(frozen=True)
class Fault:
    """What a cause injects: a misconfiguration, a code bug (the training engine: an
    implementation field of `config`, see `sim/implementations.py`; the planner: a launcher
    callback), or both."""
    summary: str                                   # one line, for instructors and `show --answers`
    config: Mapping[str, Any] = field(default_factory=dict)
    callbacks: tuple[CallbackFactory, ...] = ()    # callbacks the run gets (the planner's bugs)


@dataclass(frozen=True)
class Change:
    """One entry of "what changed since the last good run": a line of the change log, and the
    settings it changed (none for a code change). Decoys are harmless changes of this kind."""
    log: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cause:
    id: str
    title: str              # how the menu names it, e.g. "Learning rate far too high"
    fault: Fault
    explanation: str        # what happened, told after grading
    tell: str               # the signal that gives it away
    changes: tuple[str, ...] = ()   # its lines in the change log, worded like the decoys
    signal: Any = None      # a `sim.tells.Tell`: the tell as a test, checked over seeds and keys
    hints: tuple[str, ...] = ()     # staged hints: which probe to look at, then what to look for
                                    # (never naming the cause; the third hint names it)


@dataclass(frozen=True)
class Fix:
    """A named remedy. It may change settings, repair code bugs, or add callbacks."""
    id: str
    title: str
    config: Mapping[str, Any] = field(default_factory=dict)
    scale: Mapping[str, float] = field(default_factory=dict)  # multiply current values, e.g. lr x 0.1
    repairs: tuple[CallbackFactory, ...] = ()      # fault callbacks this fix removes (planner)
    callbacks: tuple[CallbackFactory, ...] = ()    # callbacks this fix adds
    cost: str = ""          # a named cost: a run it makes healthy is a workaround, not a fix


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Criterion:
    """What a healthy run looks like. Each limit is optional; `judge` reads a run summary."""
    max_final_loss: float | None = None      # mean training loss over the last steps
    max_eval_loss: float | None = None       # held-out loss at the end
    # held-out loss below this is broken, not good: no model beats the language's entropy floor
    # (set it a margin under the floor; the held-out set or the model sees what it predicts)
    min_eval_loss: float | None = None
    max_loss_swing: float | None = None      # step-to-step noise of the loss, last 40 steps
    require_finite: bool = True              # no non-finite loss or gradient at any step
    require_fit: bool = True                 # no simulated out-of-memory
    max_repeat_rate: float | None = None     # share of repeated 3-grams in generated text
    max_longest_loop: int | None = None      # longest run of a repeating n-gram, in tokens
    min_valid_rate: float | None = None      # share of generated transitions the grammar allows
    # share of prompts the server continues exactly as the model does offline (without a KV
    # cache, the same decoding settings): the standard test of a serving stack
    min_offline_match: float | None = None
    min_sequences_seen: int | None = None    # training data budget the recipe was validated on
    min_stop_rate: float | None = None       # sft: share of answers that end with EOS
    min_answer_words: float | None = None    # sft: words per answer, on average
    max_optimizer_state_mib: float | None = None  # lora: the optimizer state the memory plan allows
    min_pref_accuracy: float | None = None   # reward model: held-out pairs ranked the right way
    # dpo: held-out log-ratios log pi/pi_ref (nats per answer) against the pretrained model
    max_word_loss: float | None = None          # held-out loss per word of good answers (drift)
    max_rejected_logratio: float | None = None  # the weak answers made at least this much less likely
    # rlhf: measured on fresh samples for held-out prompts
    min_gold_reward: float | None = None        # share of the answers' tokens the grammar allows
    max_kl_pretrained: float | None = None      # KL(policy || pretrained) summed over an answer
    # A held-out bar set by how much was learnt rather than by a bare number: the held-out loss
    # must come at least `min_learnt` of the way down from the unigram baseline (predicting word
    # frequencies) to the entropy floor (the true generator's loss); 0.5 = halfway. `baselines`
    # holds (floor, unigram) of the scenario's base data, copied from `sim.data.baselines` so that
    # this module stays free of torch (a test keeps the copy exact).
    min_learnt: float | None = None
    baselines: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.min_learnt is None) != (self.baselines is None):
            raise ValueError("Criterion: min_learnt and baselines go together")
        if self.baselines is not None and not self.baselines[0] < self.baselines[1]:
            raise ValueError("Criterion: baselines must be (floor, unigram) with floor < unigram")

    @property
    def eval_bar(self) -> float | None:
        """The held-out loss a healthy run must reach: the stricter of `max_eval_loss` and the
        `min_learnt` bar."""
        bars = [b for b in (self.max_eval_loss, self._learnt_bar()) if b is not None]
        return min(bars) if bars else None

    def _learnt_bar(self) -> float | None:
        if self.min_learnt is None:
            return None
        floor, unigram = self.baselines
        return floor + (1 - self.min_learnt) * (unigram - floor)

    def _eval_note(self) -> str:
        if self.min_learnt is None or self.eval_bar != self._learnt_bar():
            return ""
        floor, unigram = self.baselines
        return (f"{self.min_learnt:.0%} of the way from the unigram baseline {unigram:.3f} "
                f"to the entropy floor {floor:.3f}")

    def judge(self, summary: Mapping[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if self.require_fit:
            oom = summary.get("oom")
            peak = summary.get("peak_memory_mb")
            checks.append(Check("fits in memory", not oom,
                                oom.get("detail") or f"out of memory at step {oom['step']}" if oom else
                                summary.get("fit_detail") or
                                (f"peak {peak:.2f} MiB" if peak else "no out-of-memory error")))
        if self.require_finite:
            bad = summary.get("nonfinite_steps", 0)
            first = summary.get("first_nonfinite_step")
            checks.append(Check("finite", bad == 0,
                                "no non-finite values" if bad == 0 else
                                f"{bad} steps with non-finite values, first at step {first}"))
        _limit(checks, "final loss", summary.get("final_loss"), self.max_final_loss)
        _limit(checks, "held-out loss", summary.get("eval_loss"), self.eval_bar,
               note=self._eval_note())
        _limit(checks, "held-out loss not below the entropy floor", summary.get("eval_loss"),
               self.min_eval_loss, at_least=True)
        _limit(checks, "loss swing", summary.get("loss_swing"), self.max_loss_swing)
        _limit(checks, "repeated 3-grams", summary.get("repeat_rate"), self.max_repeat_rate)
        _limit(checks, "longest loop", summary.get("longest_loop"), self.max_longest_loop)
        _limit(checks, "grammatical transitions", summary.get("valid_rate"),
               self.min_valid_rate, at_least=True)
        _limit(checks, "prompts continued as without the cache", summary.get("offline_match"),
               self.min_offline_match, at_least=True)
        _limit(checks, "training sequences seen", summary.get("sequences_seen"),
               self.min_sequences_seen, at_least=True)
        _limit(checks, "answers that stop", summary.get("stop_rate"), self.min_stop_rate,
               at_least=True)
        _limit(checks, "words per answer", summary.get("answer_words"), self.min_answer_words,
               at_least=True)
        _limit(checks, "optimizer state MiB", summary.get("optimizer_state_mib"),
               self.max_optimizer_state_mib)
        _limit(checks, "held-out preference accuracy", summary.get("pref_accuracy"),
               self.min_pref_accuracy, at_least=True)
        _limit(checks, "loss on good answers' words", summary.get("nll_words"),
               self.max_word_loss)
        _limit(checks, "rejected answers' log-ratio", summary.get("rejected_logratio"),
               self.max_rejected_logratio)
        _limit(checks, "gold reward", summary.get("gold_reward"), self.min_gold_reward,
               at_least=True)
        _limit(checks, "KL to the pretrained model", summary.get("kl_pretrained"),
               self.max_kl_pretrained)
        return checks

    def describe(self) -> str:
        parts = []
        if self.require_fit:
            parts.append("fits the memory budget")
        if self.require_finite:
            parts.append("no non-finite values")
        for label, value, op in (("final loss", self.max_final_loss, "<"),
                                 ("held-out loss", self.eval_bar, "<"),
                                 ("held-out loss", self.min_eval_loss, ">="),
                                 ("loss swing", self.max_loss_swing, "<"),
                                 ("repeated 3-grams", self.max_repeat_rate, "<"),
                                 ("longest loop", self.max_longest_loop, "<"),
                                 ("grammatical transitions", self.min_valid_rate, ">="),
                                 ("prompts continued as without the cache",
                                  self.min_offline_match, ">="),
                                 ("training sequences seen", self.min_sequences_seen, ">="),
                                 ("answers that stop", self.min_stop_rate, ">="),
                                 ("words per answer", self.min_answer_words, ">="),
                                 ("optimizer state MiB", self.max_optimizer_state_mib, "<"),
                                 ("held-out preference accuracy", self.min_pref_accuracy,
                                  ">="),
                                 ("loss on good answers' words", self.max_word_loss, "<"),
                                 ("rejected answers' log-ratio", self.max_rejected_logratio,
                                  "<"),
                                 ("gold reward", self.min_gold_reward, ">="),
                                 ("KL to the pretrained model", self.max_kl_pretrained, "<")):
            if value is not None:
                parts.append(f"{label} {op} {value:.4g}" if op != "<" else
                             f"{label} <= {value:.4g}")
                if label == "held-out loss" and self._eval_note():
                    parts[-1] += f" ({self._eval_note()})"
        return ", ".join(parts)


def _limit(checks: list[Check], name: str, value, limit, at_least: bool = False,
           note: str = "") -> None:
    if limit is None:
        return
    if value is None or value != value:  # missing or NaN
        checks.append(Check(name, False, f"{name} not measurable (run did not finish healthy)"))
        return
    ok = value >= limit if at_least else value <= limit
    relation = ">=" if at_least else "<="
    checks.append(Check(name, ok, f"{_number(value)} (healthy {relation} {limit:.4g}"
                                  + (f": {note})" if note else ")")))


def _number(value) -> str:
    """A measurement as printed in a check: a count (an int) as it is, the rest to 3 decimals."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.3f}"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    difficulty: str                       # easy | medium | hard
    tags: tuple[str, ...]
    story: str                            # what the learner is told: the symptom, never the cause
    base: Mapping[str, Any]               # the engine's settings shared by all causes
    causes: tuple[Cause, ...]
    fixes: tuple[Fix, ...]
    criterion: Criterion
    debrief: str                          # ties the exercise to the interview question
    interview_question: str
    # Declared verdicts, proven by re-running in the test matrix and `debugsim dev check`.
    resolves: Mapping[str, tuple[str, ...]]           # cause id -> fixes that resolve it
    masks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # cause -> masking fixes
    generates_text: bool = False          # run ends with decoding and repetition metrics
    engine: str = "training"              # the module in sim/engines/ that runs it
    # The envelope: what a learner may change to fix it (free-form settings), and what is fixed
    # by the problem itself (hardware, model, data and step budget, the measurement), with why.
    recipe: tuple[str, ...] = ()
    fixed: Mapping[str, str] = field(default_factory=dict)
    # Each incident shows 1-3 of these harmless changes beside the real one.
    decoys: tuple[Change, ...] = ()
    harms: tuple[str, ...] = ()           # fixes that break even a healthy run (a trap)
    evidence: str = "loss"                # the signal the before/after chart of a verdict shows
    # The team's code a learner can read with the `code` probe: slots of `sim/implementations.py`
    # (config.IMPLEMENTATIONS), shown as the function each run really ran.
    code: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        cause_ids = {c.id for c in self.causes}
        fix_ids = {f.id for f in self.fixes}
        for table in (self.resolves, self.masks):
            for cause_id, fix_ids_for_cause in table.items():
                if cause_id not in cause_ids:
                    raise ValueError(f"{self.id}: verdict table names unknown cause {cause_id}")
                for fix_id in fix_ids_for_cause:
                    if fix_id not in fix_ids:
                        raise ValueError(f"{self.id}: verdict table names unknown fix {fix_id}")

        from .config import IMPLEMENTATIONS
        unknown = [slot for slot in self.code if slot not in IMPLEMENTATIONS]
        if unknown:
            raise ValueError(f"{self.id}: code names unknown slots {', '.join(unknown)}")

    def cause(self, cause_id: str) -> Cause:
        for cause in self.causes:
            if cause.id == cause_id:
                return cause
        raise LookupError(_unknown("cause", cause_id, [c.id for c in self.causes], self.id))

    def fix(self, fix_id: str) -> Fix:
        for fix in self.fixes:
            if fix.id == fix_id:
                return fix
        raise LookupError(_unknown("fix", fix_id, [f.id for f in self.fixes], self.id))

    def expected_verdict(self, cause_id: str, fix_ids) -> str:
        """The declared verdict for a set of fixes: a fix that harms a healthy run spoils the set
        (unless it is itself this cause's costly workaround and no real fix is in the set);
        a resolving fix resolves (a workaround when every resolving fix in the set has a cost);
        else a masking fix masks."""
        fix_ids = [fix_ids] if isinstance(fix_ids, str) else list(fix_ids)
        resolving = [f for f in fix_ids if f in self.resolves.get(cause_id, ())]
        if any(f in self.harms for f in fix_ids):
            # a harmful change can still work around one cause (a costly fix of that cause),
            # but not once the real fix is in the set: then it harms the repaired run
            compensating = resolving and all(f in self.harms and self.fix(f).cost
                                             for f in resolving)
            return "workaround" if compensating else "not_resolved"
        if resolving:
            return "workaround" if all(self.fix(f).cost for f in resolving) else "resolved"
        if any(f in self.masks.get(cause_id, ()) for f in fix_ids):
            return "masked"
        return "not_resolved"

    def conflict(self, fix_ids) -> str | None:
        """Why these fixes cannot go together (two of them change one setting differently),
        or None."""
        seen: dict[str, tuple[str, Any]] = {}
        for fix_id in fix_ids:
            fix = self.fix(fix_id)
            effects = {**{k: ("=", v) for k, v in fix.config.items()},
                       **{k: ("x", v) for k, v in fix.scale.items()}}
            for key, effect in effects.items():
                if key in seen and seen[key][1] != effect:
                    return (f"fixes '{seen[key][0]}' and '{fix_id}' both change {key}: "
                            "choose one")
                seen.setdefault(key, (fix_id, effect))
        return None

    def check_setting(self, key: str) -> None:
        """LookupError (one line) when a free-form setting is outside the recipe envelope."""
        if not self.recipe or key in self.recipe:
            return
        if key in self.fixed:
            raise LookupError(f"'{key}' changes the problem, not the fix: {self.fixed[key]}")
        raise LookupError(f"'{key}' is not part of {self.id}'s recipe; settings you may change: "
                          f"{', '.join(self.recipe)}")


def _unknown(kind: str, name: str, options: list[str], scenario_id: str) -> str:
    from .config import did_you_mean
    return (f"unknown {kind} '{name}' for {scenario_id}{did_you_mean(name, options)}; "
            f"choose one of: {', '.join(options)}")
