"""The training engine: build a TrainConfig and the fault/fix callbacks, train, measure, save.

Scenarios that generate text decode after training (decoding is part of this engine).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..callbacks import EVENTS, Callback
from ..config import DECODING_FIELDS, TrainConfig, parse_assignments, with_overrides
from ..files import write_atomic, write_json
from ..result import RunResult, overflow_skip
from .base import Prepared, RunOptions

TAIL = 8   # steps at the end over which the final loss is measured
# steps at the end over which the loss swing is measured: its step-to-step noise (the rms of
# successive changes / sqrt 2, which a steady downward trend barely moves). Over 8 steps the
# estimate itself scatters by a quarter; over 40 by about a tenth.
SWING = 40


class TrainingEngine:
    name = "training"
    working = "Running the broken training ..."
    rerunning = "Re-running the same seeded training with your fix ..."
    plots_from_records = True      # write_plots reads no `detail` (see sim/painter.py)
    keeps_runs = True              # finished runs are worth keeping on disk (sim/run_store.py)

    def parse_settings(self, pairs: Sequence[str]) -> dict[str, Any]:
        return parse_assignments(pairs)

    def prepare(self, incident, fix_ids: Sequence[str] = (),
                sets: Mapping[str, Any] | None = None) -> Prepared:
        """The config and the callback factories for an incident with fixes and settings."""
        scenario = incident.scenario
        cause = scenario.cause(incident.cause_id) if incident.cause_id else None
        fixes = [scenario.fix(fix_id) for fix_id in fix_ids]
        overrides: dict[str, Any] = {**scenario.base, **incident.overrides}
        factories = list(cause.fault.callbacks) if cause else []
        if cause:
            overrides.update(cause.fault.config)
        for fix in fixes:
            overrides.update(fix.config)
            for key, factor in fix.scale.items():
                current = overrides.get(key, getattr(TrainConfig(), key))
                overrides[key] = current * factor
            factories = [f for f in factories if f not in fix.repairs]
            factories.extend(fix.callbacks)
        overrides.update(sets or {})
        config = with_overrides(TrainConfig(), overrides)
        return Prepared(incident, self, tuple(fix_ids), dict(sets or {}), config,
                        tuple(factories))

    def config_key(self, prepared: Prepared) -> str:
        return json.dumps(prepared.config.to_dict(), sort_keys=True)

    def settings_of(self, prepared: Prepared) -> dict[str, Any]:
        return prepared.config.recipe_dict()

    def execute(self, prepared: Prepared, out_dir: Path | None = None,
                options: RunOptions = RunOptions()) -> RunResult:
        """Train; never raises for a training failure (out of memory, non-finite values):
        those are the result. Ctrl-C propagates after the partial files are closed."""
        import torch

        torch.set_num_threads(1)   # tiny ops: one thread is faster, and results do not vary
        config = prepared.config
        out = Path(out_dir) if out_dir else None
        if out:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "config.json", json.dumps(
                {**prepared.header(), "config": config.recipe_dict()}, indent=2) + "\n")
        callbacks = [factory() for factory in prepared.callbacks]
        key = (_training_key(prepared, options) if prepared.scenario.generates_text
               and not (out or options.live) else None)
        trained = _trained.get(key) if key else None
        if trained is None:
            trained = _train(prepared, callbacks, out, options)
            if key:
                _remember(key, trained)
        else:   # the same training: its callbacks, with fresh ones for decoding
            callbacks = [*(c for c in trained.callbacks if not _decoding_only(type(c))),
                         *(c for c in callbacks if _decoding_only(type(c)))]
        result = RunResult(prepared, trained.end["status"], trained.end.get("error"),
                           list(trained.records), dict(trained.end), {}, out_dir=out)
        if trained.run is not None and prepared.scenario.generates_text \
                and result.status == "completed":
            from ..decoding import sample_and_measure
            run = dataclasses.replace(trained.run, config=config)
            trace: list = []
            result.samples, text_metrics = sample_and_measure(run, callbacks, trace)
            result.summary.update(text_metrics)
            if prepared.scenario.criterion.min_offline_match is not None:
                result.summary["offline_match"] = _offline_match(trained, run, result.samples)
            result.detail = {"step_logits": torch.cat([t["logits"] for t in trace]),
                             "cache_keys": [t["cache_keys"] for t in trace]}   # per request
        if trained.run is not None and config.data == "preferences" \
                and result.status == "completed":
            if config.model == "dpo":
                from ..dpo import dpo_summary
                scalars, held = dpo_summary(trained.run, trained.records[-TAIL:])
                name = "heldout_logratios"
            else:
                from ..preferences import preference_summary
                scalars, held = preference_summary(trained.run, trained.records[-TAIL:])
                name = "heldout_rewards"
            result.summary.update(scalars)
            result.detail = {**(result.detail or {}), name: held}
        if trained.run is not None and config.model == "rlhf" and result.status == "completed":
            from ..rlhf import rlhf_summary
            scalars, held = rlhf_summary(trained.run, trained.records[-TAIL:])
            result.summary.update(scalars)
            result.detail = {**(result.detail or {}), "heldout_rollouts": held}
        if trained.run is not None and config.lora_r:
            result.summary.update(finetuning_summary(trained.run))
        result.summary = {**summarize(result), **result.summary}
        if out:
            write_json(out / "summary.json", result.summary)
        return result

    def clear_cache(self) -> None:
        _trained.clear()

    def independent(self, first: Prepared, second: Prepared) -> bool:
        """Whether the two runs share no training (see `runs.execute_pair`): runs that differ
        only in decoding share one, and a training already done is not worth a process."""
        if not first.scenario.generates_text:
            return True
        options = RunOptions()
        key = _training_key(first, options)
        return key not in _trained and key != _training_key(second, options)

    def summary_lines(self, result: RunResult) -> list[str]:
        s, config = result.summary, result.config
        lines = [f"status: {result.status}" + (f" — {result.error}" if result.error else ""),
                 f"steps: {s['steps_completed']}/{config.steps}   "
                 f"final loss: {_num(s['final_loss'])}   held-out loss: {_num(s['eval_loss'])}",
                 f"non-finite steps: {s['nonfinite_steps']}"
                 + (f" (first at step {s['first_nonfinite_step']})" if s["nonfinite_steps"]
                    else "")]
        if result.end.get("peak_mib") is not None:
            lines.append(f"peak simulated memory: {s['peak_memory_mb']:.2f} MiB"
                         + (f" of {config.memory_budget_mib:g} MiB"
                            if config.memory_budget_mib else ""))
        for key, label in (("repeat_rate", "repeated 3-grams"), ("longest_loop", "longest loop"),
                           ("valid_rate", "grammatical transitions"),
                           ("offline_match", "prompts continued as without the cache"),
                           ("distinct_2", "distinct-2"), ("stop_rate", "answers that stop"),
                           ("answer_words", "words per answer"),
                           ("optimizer_state_mib", "optimizer state (MiB)"),
                           ("trainable_share", "trainable share of the parameters"),
                           ("pref_accuracy", "held-out preference accuracy"),
                           ("rejected_logratio", "held-out log-ratio of rejected answers"),
                           ("nll_words", "held-out loss on good answers' words"),
                           ("proxy_reward", "held-out reward-model score"),
                           ("gold_reward", "held-out gold reward (grammatical share)"),
                           ("kl_pretrained", "held-out KL to the pretrained model (nats)")):
            if key in s:
                lines.append(f"{label}: {_num(s[key])}")
        return lines

    def write_plots(self, result: RunResult, out_dir: Path) -> list[Path]:
        from ..plots import write_run_plots
        return write_run_plots(result, out_dir)

    def evidence_plot(self, before: RunResult, after: RunResult, plot_dir: Path) -> Path:
        from ..plots import compare
        name = before.prepared.scenario.evidence
        return compare(before, after, name, Path(plot_dir) / f"before_after_{name}.png")

    def verdict_notes(self, verdict) -> list[str]:
        return []


@dataclasses.dataclass
class _Trained:
    """What training leaves for decoding and the result: records, end record, the live run
    (model included) and the callbacks that trained it."""
    records: list
    end: dict
    run: Any
    callbacks: list
    offline: dict = dataclasses.field(default_factory=dict)   # decoding settings -> samples


def _offline_match(trained: _Trained, run, samples: list) -> float:
    """The share of prompts the server continued exactly as the model does offline: decoded
    with the same settings, re-reading the prefix every step (no cache). The offline text of
    a training is decoded once per decoding settings and kept with the training."""
    from ..decoding import offline_config, same_text_share, sample_and_measure
    if not run.config.kv_cache:
        return 1.0                        # the server decoded offline: the same code, the same text
    config = offline_config(run.config)
    settings = json.dumps(config.to_dict(), sort_keys=True)
    if settings not in trained.offline:
        trained.offline[settings] = sample_and_measure(dataclasses.replace(run, config=config))[0]
    return same_text_share(samples, trained.offline[settings])


def _train(prepared: Prepared, callbacks: list, out: Path | None,
           options: RunOptions) -> _Trained:
    from ..console import LiveTable
    from ..device import SimulatedOutOfMemory
    from ..loop import train
    from ..telemetry import Recorder

    config = prepared.config
    recorder = Recorder(prepared.header(), out)
    extra = [LiveTable(config.steps)] if options.live else []
    run = None
    try:
        run = train(config, [recorder, *callbacks, *extra],
                    track_memory=bool(options.track_memory))
    except SimulatedOutOfMemory:
        pass                      # recorded by the Recorder: status "oom" and the message
    except Exception as error:    # a fault may crash the loop; that is a result too
        recorder.end = {**getattr(recorder, "end", {}), "status": "error", "error": str(error)}
    return _Trained(recorder.records, recorder.end, run, callbacks)


# Trained models, by what their training depended on. Runs that differ only in decoding
# (sampling, penalties, the KV cache) share one training: a grader trying decoding fixes, or
# `check` re-running a decoding fix, decodes again without training again. Training is
# deterministic, so a served training is the one a fresh run would do.
TRAINED_CACHE = 8
_trained: "OrderedDict[str, _Trained]" = OrderedDict()


def _decoding_only(factory) -> bool:
    """A callback class that changes nothing but decoding (it overrides only on_decode_step)."""
    return isinstance(factory, type) and issubclass(factory, Callback) and all(
        getattr(factory, event) is getattr(Callback, event)
        for event in EVENTS if event != "on_decode_step")


def _training_key(prepared: Prepared, options: RunOptions) -> str:
    defaults = TrainConfig()
    config = {**prepared.config.to_dict(),
              **{name: getattr(defaults, name) for name in DECODING_FIELDS}}
    code = [f"{f.__module__}.{f.__qualname__}" if isinstance(f, type) else repr(f)
            for f in prepared.callbacks if not _decoding_only(f)]
    return json.dumps([config, code, bool(options.track_memory)], sort_keys=True)


def _remember(key: str, trained: _Trained) -> None:
    _trained[key] = trained
    _trained.move_to_end(key)
    while len(_trained) > TRAINED_CACHE:
        _trained.popitem(last=False)


def summarize(result: RunResult) -> dict:
    """The scalars a criterion judges: final loss, swing, non-finite steps, memory, ..."""
    records, config = result.records, result.config
    losses = [r["loss"] for r in records]
    tail = losses[-TAIL:]
    finite_tail = all(v is not None for v in tail) and bool(tail)
    nonfinite = [r for r in records if r["nonfinite"] and not overflow_skip(r, config)]
    suppressed = [r for r in nonfinite if not r["updated"]]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    oom = None
    if result.status == "oom":
        oom = {"step": len(records), "message": result.error}
    return {
        "status": result.status,
        "steps_completed": len(records),
        "final_loss": statistics.fmean(tail) if finite_tail else float("nan"),
        "loss_swing": _swing(losses[-SWING:]),
        "eval_loss": evals[-1] if evals and result.status == "completed" else float("nan"),
        "nonfinite_steps": len(nonfinite),
        "first_nonfinite_step": nonfinite[0]["step"] if nonfinite else None,
        "suppressed_steps": len(suppressed),
        "peak_memory_mb": result.end.get("peak_mib") or 0.0,
        "sequences_seen": len(records) * config.batch_size * config.grad_accum_steps,
        "oom": oom,
    }


def _swing(losses: list) -> float:
    """The loss's step-to-step noise: the rms of successive changes / sqrt 2 (for independent
    noise around a level it is the noise's std; a trend of t per step adds only t^2 / 2)."""
    if len(losses) < 2 or any(v is None or v != v for v in losses):
        return float("nan")
    changes = [b - a for a, b in zip(losses, losses[1:])]
    return math.sqrt(math.fsum(c * c for c in changes) / (2 * len(changes)))


def finetuning_summary(run) -> dict:
    """A LoRA run: the optimizer state it holds at the end (the exact bytes of its tensors, what
    a device allocates for them) and the share of the model's parameters that are trainable."""
    import torch
    from ..device import MiB
    from ..lora import trainable_report
    state = sum(value.nbytes for per_param in run.optimizer.state.values()
                for value in per_param.values() if torch.is_tensor(value))
    trainable, total, _ = trainable_report(run.model)
    return {"optimizer_state_mib": state / MiB, "trainable_share": trainable / total}


def _num(value, digits: int = 3) -> str:
    if value is None or value != value:
        return "nan"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


ENGINE = TrainingEngine()
