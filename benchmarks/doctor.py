"""How well `debugsim doctor` reads the catalogue's broken runs, from their logs alone.

Run from the repository root:

    .venv/bin/python benchmarks/doctor.py                     # seeds 0-4, two keys, 2 jobs
    .venv/bin/python benchmarks/doctor.py --seeds 0,1 --keys a --jobs 1 --only nan_loss

For every scenario x cause x seed x key it runs the incident with that cause injected
(`app.injected`), writes its run folder, and gives the folder's metrics.jsonl to the doctor,
which reads nothing else. The benchmark (not the doctor) knows the cause, and the family a log
of that cause should be read as (EXPECTED below); a cause in PROBE leaves no trace in the
logged signals (it needs a probe beyond the log: samples, the KV cache; the reason is printed)
and is reported apart. Where a scenario's story states the data's loss floor (FLOORS), the
doctor is given it, as a user would pass `--floor`.
Then the healthy base of every scenario, seeds 0-4 by default: any finding there is a false
alarm. Prints the confusion matrix (expected family x the top finding's family), the share
right per cause, and exits 1 if a target is missed (>= 95 % right where the signals differ, no
false alarm).
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# What a log of each cause should be read as. A cause in PROBE instead does not show in the
# logged signals (honestly out of the doctor's reach: it needs a probe beyond the log, said
# why). A cause in neither is reported as undeclared.
EXPECTED = {
    ("bad_lr", "lr_too_high"): "lr_too_high",
    ("bad_lr", "lr_too_low"): "not_converged",
    ("nan_loss", "lr_too_high"): "divergence",
    ("nan_loss", "empty_label_division"): "nonfinite_isolated",
    ("nan_loss", "fully_masked_row"): "nonfinite_from_start",
    ("oom", "batch_too_large"): "memory_sizing",
    ("oom", "kept_graph"): "memory_leak",
    ("oom", "eval_with_grad"): "memory_spike",
    ("repetitive_decoding", "undertrained"): "not_converged",
    ("sft_label_mask", "eos_missing"): "train_eval_mismatch",
    ("sft_label_mask", "eos_unlabelled"): "train_eval_mismatch",
    ("sft_label_mask", "labels_not_shifted"): "leakage",
    ("lora_wont_learn", "adapters_not_in_optimizer"): "params_not_updated",
    ("lora_wont_learn", "adapters_zero_init"): "no_gradient",
    ("loss_fluctuates", "zero_grad_missing"): "gradients_not_cleared",
    ("loss_fluctuates", "grads_cleared_every_4th_step"): "accumulation_mismatch",
    ("too_good_to_be_true", "window_sees_target"): "leakage",
    ("too_good_to_be_true", "targets_not_shifted"): "leakage",
    ("too_good_to_be_true", "heldout_from_train_set"): "leakage",      # with the floor (FLOORS)
    ("never_stops", "eos_masked_as_padding"): "train_eval_mismatch",
    ("reward_model_backwards", "pairs_swapped"): "train_eval_mismatch",
    ("reward_model_backwards", "length_labels"): "train_eval_mismatch",
    ("reward_model_backwards", "reward_at_padding"): "no_gradient",
    ("rlhf_reward_hacking", "kl_penalty_off"): "kl_penalty_missing",
    ("rlhf_reward_hacking", "reference_not_frozen"): "reference_not_frozen",
    ("rlhf_reward_hacking", "overoptimised"): "kl_runaway",
}
PROBE = {
    ("repetitive_decoding", "sampling_ignored"): "decoding only; the samples probe",
    ("repetitive_decoding", "stale_kv_cache"): "decoding only; samples kv_cache=false",
    ("sft_label_mask", "prompt_in_loss"):
        "train and held-out losses as healthy ones; the mask probe shows labelled prompts",
    ("lora_wont_learn", "scaling_inverted"):
        "a loss that falls part of the way with normal updates, as a harder task would; "
        "the code / params probe (or a baseline run)",
    ("lora_wont_learn", "base_trainable"):
        "it learns; only the optimizer state (not in the step log) is 11x the plan; params",
    ("loss_fluctuates", "tiny_batch"):
        "a noisier loss, but healthy runs of other scenarios swing as much; the batch probe "
        "shows 4 rows where the config says 32",
    ("kv_cache_mismatch", "positions_not_advanced"): "decoding only: identical training logs; kvdiff",
    ("kv_cache_mismatch", "kv_appended_twice"): "decoding only: identical training logs; kvdiff",
    ("kv_cache_mismatch", "cache_not_reset"): "decoding only: identical training logs; kvdiff",
    ("kv_cache_mismatch", "padded_positions_from_cache"):
        "decoding only: identical training logs; kvdiff",
    ("never_stops", "wrong_stop_token"): "decoding only (the stop check); samples",
    ("never_stops", "template_mismatch"): "inference template only; samples / the prompt as fed",
    ("dpo_stuck", "reference_is_policy"):
        "the loss sits at ln 2 while the weights move: the log shows no progress (read as "
        "not_converged), not why; logratios shows both log-ratios at exactly 0",
    ("dpo_stuck", "beta_too_small"):
        "the loss falls as a healthy run's does; the drift is in the held-out log-ratios; "
        "logratios",
    ("dpo_stuck", "beta_too_large"):
        "the loss swings between 0 and several nats, as an lr too high would make it (read "
        "as lr_too_high); only the implicit-reward margin (logratios) shows beta",
}
# The loss floor a user of that data knows and gives as `debugsim doctor --floor` (the
# scenario's story states it: the toy language's entropy), for broken and healthy runs alike.
FLOORS = {"too_good_to_be_true": 0.964}
TARGET = 0.95
NO_LOG = "(no log)"


def one(job: tuple) -> tuple:
    """(scenario, cause or None, seed, key) -> (job, top family or NO_LOG, all families)."""
    scenario, cause, seed, key = job
    from debugsim.sim import app, doctor
    prepared = (app.injected(scenario, seed, cause, key=key) if cause
                else app.prepare(scenario, seed))
    with tempfile.TemporaryDirectory() as out:
        app.execute(prepared, Path(out))
        log = Path(out) / "metrics.jsonl"
        if not log.exists():
            return job, NO_LOG, []
        diagnosis = doctor.diagnose(log, FLOORS.get(scenario))
    return job, (diagnosis.top.family if diagnosis.top else None), \
        [f.family for f in diagnosis.findings]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--keys", default="doctor-a,doctor-b")
    parser.add_argument("--healthy-seeds", default="0,1,2,3,4")
    parser.add_argument("--only", default="", help="comma-separated scenario ids")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from debugsim.sim import registry
    seeds = [int(s) for s in args.seeds.split(",") if s]
    keys = [k for k in args.keys.split(",") if k]
    only = {s for s in args.only.split(",") if s}
    scenarios = [s for s in registry.all_scenarios() if not only or s.id in only]
    broken = [(s.id, c.id, seed, key) for s in scenarios for c in s.causes for seed in seeds
              for key in keys]
    healthy = [(s.id, None, seed, None) for s in scenarios
               for seed in (int(x) for x in args.healthy_seeds.split(",") if x)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, broken + healthy))
    print(f"{len(results)} runs in {time.perf_counter() - started:.0f} s "
          f"(seeds {args.seeds}; keys {', '.join(keys)}; healthy seeds {args.healthy_seeds})\n")
    return report(results)


def report(results) -> int:
    per_cause = collections.defaultdict(collections.Counter)
    matrix = collections.defaultdict(collections.Counter)
    alarms, no_log = [], set()
    for (scenario, cause, seed, key), top, families in results:
        if top == NO_LOG:
            no_log.add(scenario)
            continue
        if cause is None:
            if families:
                alarms.append(f"{scenario} seed {seed}: {', '.join(families)}")
            continue
        expected = EXPECTED.get((scenario, cause), None if (scenario, cause) in PROBE
                                else "undeclared")
        per_cause[scenario, cause][top] += 1
        matrix[expected][top] += 1
    columns = sorted({c for row in matrix.values() for c in row}, key=str)
    width = max([len(str(c)) for c in columns] + [8])
    print("Confusion matrix: expected family (rows) x the doctor's top finding (columns)")
    print(" " * 22 + "".join(f"{str(c)[:width]:>{width + 1}}" for c in columns))
    for expected in sorted(matrix, key=str):
        print(f"{str(expected):<22}" + "".join(f"{matrix[expected][c]:>{width + 1}}"
                                               for c in columns))
    print("\nPer cause (share whose top finding names the expected family):")
    right = total = 0
    missed = []
    for (scenario, cause), counts in sorted(per_cause.items()):
        expected = EXPECTED.get((scenario, cause), "undeclared")
        n = sum(counts.values())
        if expected == "undeclared":
            note = (f"needs a probe beyond the log ({PROBE[scenario, cause]})"
                    if (scenario, cause) in PROBE
                    else "no expected family declared in benchmarks/doctor.py")
            print(f"  {scenario}/{cause:<24} {note}; top findings: {dict(counts)}")
            continue
        ok = counts[expected]
        right, total = right + ok, total + n
        print(f"  {scenario}/{cause:<24} {ok}/{n} = {ok / n:.0%}  (-> {expected}; "
              f"got {dict(counts)})")
        if ok / n < TARGET:
            missed.append(f"{scenario}/{cause}")
    share = right / total if total else float("nan")
    print(f"\nwhere the causes differ in the logged signals: {right}/{total} = {share:.1%} "
          f"(target >= {TARGET:.0%})")
    if no_log:
        print(f"no training log (not read): {', '.join(sorted(no_log))}")
    print(f"healthy runs with a finding (false alarms): {len(alarms)}")
    for line in alarms:
        print(f"  {line}")
    return 0 if share >= TARGET and not alarms else 1


if __name__ == "__main__":
    sys.exit(main())
