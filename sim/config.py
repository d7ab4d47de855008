"""The run configuration: one frozen dataclass, every field with a default and a comment.

Overrides go through `with_overrides`, which parses `key=value` strings against the field's
type and rejects unknown keys, wrong types and out-of-range values with a one-line
`ConfigError`. This module must not import torch (the CLI lists scenarios without it).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping


class ConfigError(ValueError):
    """A user-supplied setting that cannot be used; the message is one line."""


@dataclass(frozen=True)
class TrainConfig:
    # --- model ---
    model: str = "transformer"      # transformer | mlp | reward (a transformer with a scalar head)
    #                                 | dpo (a transformer LM tuned with DPO against a reference)
    #                                 | rlhf (a transformer LM tuned by policy gradient on a reward model)
    vocab_size: int = 16            # toy-language vocabulary (incl. 4 special tokens)
    seq_len: int = 24               # tokens per training sequence
    d_model: int = 48               # embedding width
    n_layer: int = 2                # transformer blocks
    n_head: int = 4                 # attention heads
    attn_mask_value: str = "min"    # what masked scores are filled with: min (finfo.min) | -inf
    base_model: str = "scratch"     # scratch (random init) | pretrained (the team's toy-language LM)
    # --- LoRA (sim/lora.py; PEFT's names) ---
    lora_r: int = 0                 # adapter rank; 0 = no adapters, every parameter trains
    lora_alpha: float = 16.0        # the adapter's output is scaled by lora_alpha / r
    lora_targets: str = "hidden,out"  # linear layers that get adapters, by attribute name
    # --- data ---
    data: str = "markov"            # markov (plain LM) | sft (prompt/response with padding) | preferences
    #                                 | rollouts (the policy's own answers, scored by a reward model)
    train_sequences: int = 0        # markov: size of the training set (epochs repeat it); 0 = endless
    padding_side: str = "right"     # right | left (sft data only)
    length_grouped: bool = False    # sft: batch sequences of similar length together
    sft_lengths: str = "short_answers"  # sft: short_answers | long_answers | four_word_answers
    pad_token: str = "pad"          # sft: what the collator pads with: pad (its own id) | eos
    pref_lengths: str = "balanced"  # preferences: balanced (lengths drawn apart) | chosen_longer
    dpo_beta: float = 0.1           # dpo: beta, the weight of the implicit reward (KL strength)
    rlhf_beta: float = 0.05         # rlhf: beta, the weight of the KL penalty to the reference
    # --- optimisation ---
    optimizer: str = "adamw"        # adamw | adam | sgd
    lr: float = 1e-2                # peak learning rate
    momentum: float = 0.9           # sgd only
    weight_decay: float = 0.0
    batch_size: int = 32            # sequences per micro-batch
    grad_accum_steps: int = 1       # micro-batches per optimizer step
    grad_clip: float = 0.0          # max global grad norm; 0 = off
    warmup_steps: int = 0           # linear warmup from lr/100 to lr
    schedule: str = "constant"      # constant | cosine | linear (decay after warmup)
    steps: int = 60                 # optimizer steps
    skip_nonfinite: bool = False    # skip updates whose loss/grads are not finite
    # --- numerics ---
    precision: str = "fp32"         # fp32 | fp16 | bf16 (autocast)
    loss_scale: str = "dynamic"     # fp16 only: dynamic | none | a fixed number, e.g. 65536
    # --- memory ---
    memory_budget_mib: float = 0.0  # simulated device capacity in MiB (2^20 B); 0 = unlimited
    activation_checkpointing: bool = False
    # --- evaluation ---
    eval_every: int = 0             # steps between held-out evaluations; 0 = only at the end
    eval_batch_size: int = 64       # sequences in the held-out batch
    # --- decoding (used by scenarios that generate text) ---
    decode: str = "greedy"          # greedy | sample
    temperature: float = 1.0
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1.0 = off
    repetition_penalty: float = 1.0 # 1.0 = off
    no_repeat_ngram: int = 0        # 0 = off
    gen_tokens: int = 40            # tokens generated per sample
    kv_cache: bool = True
    requests: int = 1               # the prompts arrive as this many requests, served in turn
    prompt_lengths: str = "equal"   # equal (every prompt 4 words) | mixed (2-4 words, left-padded)
    # --- code: which way each replaceable function of the team's code is written (see
    # `sim/implementations.py`); never a setting, never in a config file ---
    token_choice: str = "by_decode_setting"   # decoding: how the next token is picked
    kv_cache_update: str = "store_each_step"      # decoding: how the KV cache grows
    sft_template: str = "with_eos"                # sft data: how a pair becomes token ids
    sft_labels: str = "response_and_eos"          # sft data: which tokens carry a label
    label_shift: str = "one_ahead"               # data: how targets line up with inputs
    lora_init: str = "a_like_linear"              # lora: how a fresh adapter's A and B start
    lora_scaling: str = "alpha_over_r"            # lora: the factor on the adapter's output
    lora_freeze: str = "assign"                   # lora: how the base model is frozen
    lora_setup: str = "wrap_then_collect"         # lora: adapters in, parameters to the optimizer
    grad_reset: str = "grads_to_none"             # loop: clearing gradients after the step
    batch_split: str = "by_processes"             # data: sequences this process loads per batch
    lm_window: str = "ending_at_token"            # mlp: which tokens each position predicts from
    heldout_split: str = "own_stream"             # data: where the held-out sequences come from
    padding_labels: str = "by_position"           # sft data: how padding loses its labels
    kv_positions: str = "after_cache"             # serving: rotary positions of cached tokens
    kv_lifetime: str = "per_request"              # serving: which cache a request starts from
    kv_row_positions: str = "whole_mask"          # serving: positions of a left-padded row
    chat_template: str = "reply_marker"           # serving: how a chat prompt becomes token ids
    stop_check: str = "eos"                       # serving: where an answer ends
    lr_update: str = "from_schedule"              # loop: the lr set on the optimizer each step
    loss_mean: str = "count_at_least_one"         # loop: the batch loss from the token losses
    confidence_log: str = "python_float"          # loop: the confidence metric it logs
    eval_autograd: str = "graph_free"             # loop: the held-out evaluation
    step_budget: str = "recipe_steps"             # loop: when training ends
    pair_order: str = "chosen_first"              # preferences: how the collator lays out a pair
    reward_position: str = "last_real_token"      # reward model: where a row's reward is read
    dpo_reference: str = "deep_copy"              # dpo: how the reference model is made
    dpo_scale: str = "beta_on_margin"             # dpo: where beta enters the loss
    rlhf_reference: str = "loaded_copy"           # rlhf: how the KL penalty's reference is made
    rlhf_penalty: str = "beta_from_config"        # rlhf: how the KL penalty enters the reward
    # --- run ---
    seed: int = 0
    device: str = "cpu"             # cpu | cuda

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def recipe_dict(self) -> dict[str, Any]:
        """The settings a config file holds: without the fields that stand for how the code
        is written (those show up as code, never in a run's config), without the LoRA and
        checkpoint fields of a run that uses neither (a PEFT config exists only for PEFT runs),
        the training-set size of a run that reads an endless stream, the prompt lengths of a run
        whose prompts all have one length (nothing padded), and how the preference data
        was labelled (a property of the data set, not a setting)."""
        unused = () if self.lora_r else ("lora_r", "lora_alpha", "lora_targets")
        unused += ("base_model",) if self.base_model == "scratch" else ()
        unused += ("train_sequences",) if not self.train_sequences else ()
        unused += ("pref_lengths",)   # what the preference data holds: the data shows it
        unused += ("dpo_beta",) if self.model != "dpo" else ()
        unused += ("prompt_lengths",) if self.prompt_lengths == "equal" else ()   # no padding
        unused += ("rlhf_beta",) if self.model != "rlhf" else ()
        return {k: v for k, v in self.to_dict().items()
                if k not in IMPLEMENTATION_FIELDS and k not in unused}

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.seq_len


# The replaceable functions of the team's code (`sim/implementations.py`): the TrainConfig field
# that picks one, and the names of its implementations, the usual (healthy) one first.
IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "token_choice": ("by_decode_setting", "by_decode_name"),
    "kv_cache_update": ("store_each_step", "store_on_prefill", "store_step_twice"),
    "sft_template": ("with_eos", "without_eos"),
    "sft_labels": ("response_and_eos", "response_words", "whole_example"),
    "label_shift": ("one_ahead", "same_position"),
    "lora_init": ("a_like_linear", "both_zero"),
    "lora_scaling": ("alpha_over_r", "r_over_alpha"),
    "lora_freeze": ("assign", "compare"),
    "lora_setup": ("wrap_then_collect", "collect_then_wrap"),
    "grad_reset": ("grads_to_none", "grads_detached", "after_accumulation"),
    "batch_split": ("by_processes", "by_node_gpus", "by_optimizer_step"),
    "lm_window": ("ending_at_token", "around_token"),
    "heldout_split": ("own_stream", "dataset_tail"),
    "padding_labels": ("by_position", "by_pad_id"),
    "kv_positions": ("after_cache", "in_chunk"),
    "kv_lifetime": ("per_request", "per_server"),
    "kv_row_positions": ("whole_mask", "fed_tokens_mask"),
    "chat_template": ("reply_marker", "no_reply_marker"),
    "stop_check": ("eos", "sep"),
    "lr_update": ("from_schedule", "compounding_ramp", "times_ten", "times_tenth"),
    "loss_mean": ("count_at_least_one", "count_as_is"),
    "confidence_log": ("python_float", "graph_tensor"),
    "eval_autograd": ("graph_free", "graph_kept"),
    "step_budget": ("recipe_steps", "template_steps"),
    "pair_order": ("chosen_first", "rejected_first"),
    "reward_position": ("last_real_token", "last_column"),
    "dpo_reference": ("deep_copy", "shallow_copy"),
    "dpo_scale": ("beta_on_margin", "beta_twice", "beta_divides"),
    "rlhf_reference": ("loaded_copy", "assigned_weights"),
    "rlhf_penalty": ("beta_from_config", "beta_from_kl_coef"),
}

# Fields that model how the code is written (a code bug is injected by setting one), not
# settings a user writes in a config file.
IMPLEMENTATION_FIELDS = ("attn_mask_value", *IMPLEMENTATIONS)

# Fields only decoding reads: two runs that differ only in these train the same model.
DECODING_FIELDS = ("decode", "temperature", "top_k", "top_p", "repetition_penalty",
                   "no_repeat_ngram", "gen_tokens", "kv_cache",
                   "token_choice", "kv_cache_update", "requests", "kv_positions",
                   "kv_lifetime", "chat_template", "stop_check", "prompt_lengths",
                   "kv_row_positions")

# Why a training scenario refuses a free-form setting: it changes the problem, not the fix.
FIXED_REASONS: dict[str, str] = {
    "model": "the model is part of the problem", "base_model": "the model is part of the problem",
    "lora_targets": "the adapter layout is part of the problem",
    "lora_r": "the adapter layout is part of the problem",
    "lora_alpha": "the adapter layout is part of the problem", "d_model": "the model is part of the problem",
    "n_layer": "the model is part of the problem", "n_head": "the model is part of the problem",
    "data": "the data is part of the problem", "vocab_size": "the data is part of the problem",
    "seq_len": "the data is part of the problem",
    "sft_lengths": "the data is part of the problem",
    "pref_lengths": "the data is part of the problem",
    "memory_budget_mib": "the device is part of the problem",
    "device": "the hardware is part of the problem",
    "steps": "the step budget is part of the problem",
    "eval_every": "it changes the measurement, not the training",
    "eval_batch_size": "it changes the measurement, not the training",
    "gen_tokens": "it changes the measurement (how much text is judged), not the model",
    "seed": "the seed is the incident itself",
    "attn_mask_value": "it is how the code is written, not a setting: use the named fix",
    "requests": "it changes the measurement (how the prompts arrive), not the model",
    "prompt_lengths": "it changes the measurement (which prompts arrive), not the model",
    **{slot: "it is how the code is written, not a setting: use the named fix"
       for slot in IMPLEMENTATIONS},
}

CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("transformer", "mlp", "reward", "dpo", "rlhf"),
    "base_model": ("scratch", "pretrained"),
    "attn_mask_value": ("min", "-inf"),
    "data": ("markov", "sft", "preferences", "rollouts"),
    "pref_lengths": ("balanced", "chosen_longer"),
    "sft_lengths": ("short_answers", "long_answers", "four_word_answers"),
    "padding_side": ("right", "left"),
    "optimizer": ("adamw", "adam", "sgd"),
    "schedule": ("constant", "cosine", "linear"),
    "precision": ("fp32", "fp16", "bf16"),
    "decode": ("greedy", "sample"),
    "device": ("cpu", "cuda"),
    "pad_token": ("pad", "eos"),
    "prompt_lengths": ("equal", "mixed"),
    **IMPLEMENTATIONS,
}

# (lowest allowed, whether the lowest itself is allowed)
_LOWER_BOUNDS: dict[str, tuple[float, bool]] = {
    "vocab_size": (8, True), "seq_len": (4, True), "d_model": (4, True), "n_layer": (1, True),
    "n_head": (1, True), "lora_r": (0, True), "lora_alpha": (0, False), "lr": (0, False), "momentum": (0, True), "weight_decay": (0, True),
    "train_sequences": (0, True), "batch_size": (1, True), "grad_accum_steps": (1, True), "grad_clip": (0, True),
    "warmup_steps": (0, True), "steps": (1, True), "memory_budget_mib": (0, True),
    "eval_every": (0, True), "eval_batch_size": (1, True), "temperature": (0, False),
    "top_k": (0, True), "top_p": (0, False), "repetition_penalty": (0, False),
    "no_repeat_ngram": (0, True), "gen_tokens": (1, True), "seed": (0, True),
    "requests": (1, True), "dpo_beta": (0, False), "rlhf_beta": (0, True),
}
_UPPER_BOUNDS: dict[str, float] = {"vocab_size": 64, "d_model": 1024, "n_layer": 24, "top_p": 1.0, "momentum": 1.0, "lr": 100.0, "steps": 100_000,
                                   "seq_len": 4096, "batch_size": 65_536,
                                   "seed": 2**32 - 1}

_TYPE_NAMES = {"str": str, "int": int, "float": float, "bool": bool}
FIELD_TYPES: dict[str, type] = {f.name: _TYPE_NAMES[f.type] for f in fields(TrainConfig)}


def did_you_mean(name: str, options) -> str:
    """' (did you mean 'x'?)' or '' — for one-line error messages."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_value(key: str, raw: Any) -> Any:
    """Turn a user's value for `key` into the field's type, or raise ConfigError."""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown setting '{key}'{did_you_mean(key, FIELD_TYPES)}; "
                          f"settings: {', '.join(FIELD_TYPES)}")
    kind = FIELD_TYPES[key]
    if not isinstance(raw, str):
        value = raw
    elif kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            value = True
        elif lowered in ("0", "false", "no", "off"):
            value = False
        else:
            raise ConfigError(f"{key}={raw!r}: expected true or false")
    elif kind is int:
        try:
            as_float = float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected an integer") from None
        if not as_float.is_integer():
            raise ConfigError(f"{key}={raw!r}: expected an integer")
        value = int(as_float)
    elif kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected a number") from None
    else:
        value = raw.strip()
    _check_value(key, value)
    return value


def _check_value(key: str, value: Any) -> None:
    kind = FIELD_TYPES[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r}: expected {kind.__name__}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a finite number")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(CHOICES[key])}"
                          f"{did_you_mean(value, CHOICES[key])}")
    if key == "loss_scale" and value not in ("dynamic", "none"):
        try:
            scale = float(value)
        except ValueError:
            raise ConfigError(f"loss_scale={value!r}: expected dynamic, none or a number") from None
        if not scale > 0:
            raise ConfigError(f"loss_scale={value!r}: must be positive")
    if key in _LOWER_BOUNDS:
        low, inclusive = _LOWER_BOUNDS[key]
        if value < low or (value == low and not inclusive):
            relation = "at least" if inclusive else "greater than"
            raise ConfigError(f"{key}={value!r}: must be {relation} {low:g}")
    if key in _UPPER_BOUNDS and value > _UPPER_BOUNDS[key]:
        high = _UPPER_BOUNDS[key]
        high_text = str(int(high)) if float(high).is_integer() else f"{high:g}"
        raise ConfigError(f"{key}={value!r}: must be at most {high_text}")


def parse_assignments(pairs) -> dict[str, Any]:
    """['lr=1e-3', 'grad_clip=1'] -> {'lr': 0.001, 'grad_clip': 1.0}."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"'{pair}': expected key=value, e.g. lr=3e-4")
        parsed[key] = parse_value(key, raw.strip())
    return parsed


def with_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of `config` with `overrides` applied (values parsed and checked)."""
    parsed = {key: parse_value(key, value) for key, value in overrides.items()}
    parsed = {key: float(v) if FIELD_TYPES[key] is float else v for key, v in parsed.items()}
    new = dataclasses.replace(config, **parsed)
    validate(new)
    return new


def validate(config: TrainConfig) -> None:
    """Cross-field checks that a single value cannot catch."""
    if config.d_model % config.n_head:
        raise ConfigError(f"d_model={config.d_model} must be divisible by n_head={config.n_head}")
