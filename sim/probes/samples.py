"""Text samples of a run that generates text, optionally re-decoded with other settings."""
from __future__ import annotations

from ..config import parse_assignments
from ..result import RunResult
from ._common import ProbeError

DECODING_KEYS = ("decode", "temperature", "top_k", "top_p", "repetition_penalty",
                 "no_repeat_ngram", "gen_tokens", "kv_cache")


def render_samples(result: RunResult, overrides=None, count: int = 6) -> str:
    """The `samples` probe: a few of the run's generations as text, with their metrics.

    With decoding `overrides` (e.g. decode=sample, kv_cache=false) the same seeded training is
    re-run, faults and fixes included, and decoded with them. Only decoding settings are
    accepted: a probe must not change the training. The text is shown as generated, with the
    run's measurements below it; nothing in the text is marked.
    """
    from ..decoding import shown_prompts
    overrides = dict(overrides or {})
    others = sorted(set(overrides) - set(DECODING_KEYS))
    if others:
        raise ProbeError(f"samples takes decoding settings only ({', '.join(DECODING_KEYS)}); "
                         f"not {', '.join(others)}")
    if overrides:
        prepared = result.prepared
        prepared = prepared.with_fixes(prepared.fix_ids, {**prepared.sets, **overrides})
        result = prepared.engine.execute(prepared)
    if not result.samples:
        return f"no samples: the run ended with status '{result.status}'"
    cfg, summary = result.config, result.summary
    if cfg.data == "sft":
        return _render_answers(result, count)
    prompts = shown_prompts(cfg, len(result.samples))
    settings = (f"decode={cfg.decode} temperature={cfg.temperature:g} top_k={cfg.top_k} "
                f"top_p={cfg.top_p:g} repetition_penalty={cfg.repetition_penalty:g} "
                f"no_repeat_ngram={cfg.no_repeat_ngram} kv_cache={str(cfg.kv_cache).lower()}")
    lines = [settings]
    for prompt, sample in list(zip(prompts, result.samples))[:count]:
        lines.append(f"  {' '.join(map(str, prompt))} | {' '.join(map(str, sample))}")
    lines.append(f"({min(count, len(result.samples))} of {len(result.samples)} samples; "
                 f"the prompt, then the generated tokens)")
    lines.append(f"over all {len(result.samples)} samples: "
                 f"repeated 3-grams {summary['repeat_rate']:.2f}   "
                 f"longest loop {summary['longest_loop']:.1f} tokens   "
                 f"distinct-2 {summary['distinct_2']:.2f}   "
                 f"grammatical transitions {summary['valid_rate']:.2f}")
    return "\n".join(lines)


def _render_answers(result: RunResult, count: int) -> str:
    from ..decoding import shown_prompts
    cfg, summary = result.config, result.summary
    prompts = shown_prompts(cfg, len(result.samples))
    lines = [f"decode={cfg.decode} temperature={cfg.temperature:g} "
             f"max_new_tokens={cfg.gen_tokens}"]
    for prompt, answer in list(zip(prompts, result.samples))[:count]:
        lines.append(f"  {' '.join(map(str, prompt))} | {' '.join(map(str, answer))}")
    lines.append(f"({min(count, len(result.samples))} of {len(result.samples)} held-out "
                 f"prompts: the prompt as the server fed it, then the answer; BOS is 1, SEP 3, "
                 f"EOS 2, padding 0)")
    lines.append(f"over all {len(result.samples)} answers: ended with EOS "
                 f"{summary['stop_rate']:.2f}   words per answer "
                 f"{summary['answer_words']:.1f}   grammatical transitions "
                 f"{summary['valid_rate']:.2f}")
    return "\n".join(lines)


NAME = "samples"
USAGE = "samples [k=v ...]"
HELP = "generate text with decoding settings"
ENGINES = ("training",)
ORDER = 80                      # place in the help list


def available(scenario) -> bool:
    return scenario.generates_text


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_samples(result, parse_assignments(args))
