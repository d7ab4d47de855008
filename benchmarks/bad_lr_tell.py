"""What tells bad_lr's two causes apart? Per-seed signals of lr_too_high and lr_too_low.

For seeds 0-9 and each cause this prints the loss curve (start, lowest, end, and whether the
loss ever rose by a lot between steps), the gradient norm (first step, largest, last), the
update/param ratio (first step, median, last) and the learning rate of the run; then the LR
range test on the scenario's base config (the same for both causes: the finder sweeps the
recipe, not the hidden fault). The tell in scenarios/bad_lr.py quotes these numbers.

    .venv/bin/python benchmarks/bad_lr_tell.py [--seeds 0-9]
"""
from __future__ import annotations

import argparse
import statistics
import sys


def summary(values):
    return f"{min(values):.3g} .. {max(values):.3g} (median {statistics.median(values):.3g})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-9")
    args = parser.parse_args(argv)
    low, _, high = args.seeds.partition("-")
    seeds = range(int(low), int(high or low) + 1)

    import torch
    from debugsim.sim import registry
    from debugsim.sim.probes import lr_range_test
    from debugsim.sim.app import prepare, simulate as execute

    torch.set_num_threads(1)
    scenario = registry.get("bad_lr")
    rows = {}
    for cause in ("lr_too_high", "lr_too_low", None):
        stats = {k: [] for k in ("loss0", "loss_min", "loss_end", "max_rise", "gn0", "gn_max",
                                 "gn_max_step", "gn_end", "ur0", "ur_max", "ur_med", "ur_end",
                                 "ur_vs_healthy", "pn_growth", "eval")}
        for seed in seeds:
            result = execute(scenario, seed, cause)
            recs = result.records
            loss = [r["loss"] for r in recs]
            gn = [r["grad_norm"] for r in recs]
            ur = [r["update_ratio"] for r in recs]
            stats["loss0"].append(loss[0])
            stats["loss_min"].append(min(loss))
            stats["loss_end"].append(result.summary["final_loss"])
            stats["max_rise"].append(max(b - a for a, b in zip(loss, loss[1:])))
            stats["gn0"].append(gn[0])
            stats["gn_max"].append(max(gn))
            stats["gn_max_step"].append(gn.index(max(gn)))
            stats["gn_end"].append(gn[-1])
            stats["ur0"].append(ur[0])
            stats["ur_med"].append(statistics.median(ur))
            stats["ur_end"].append(ur[-1])
            stats["ur_max"].append(max(ur))
            healthy = execute(scenario, seed, None).records if cause else recs
            stats["ur_vs_healthy"].append(statistics.median(
                a["update_ratio"] / b["update_ratio"] for a, b in zip(recs[:10], healthy[:10])))
            stats["pn_growth"].append(recs[-1]["param_norm"] / recs[0]["param_norm"])
            stats["eval"].append(result.summary["eval_loss"])
        rows[cause or "healthy"] = stats
    labels = {"loss0": "loss at step 0", "loss_min": "lowest step loss",
              "loss_end": "final loss (last 8 steps)", "max_rise": "largest step-to-step rise",
              "gn0": "grad norm at step 0", "gn_max": "largest grad norm",
              "gn_max_step": "step of the largest grad norm", "gn_end": "grad norm at the end",
              "ur0": "update/param at step 0", "ur_med": "update/param, median",
              "ur_max": "update/param, largest", "ur_end": "update/param at the end",
              "ur_vs_healthy": "update/param / healthy run's, steps 0-9 (median)",
              "pn_growth": "param norm end / start",
              "eval": "held-out loss"}
    print(f"bad_lr over seeds {args.seeds}: min .. max (median)")
    for name, label in labels.items():
        print(f"  {label}")
        for cause, stats in rows.items():
            print(f"    {cause:<12} {summary(stats[name])}")
    finder = [lr_range_test(prepare(scenario, seed).config) for seed in seeds]
    print("  LR range test on the base recipe (the same whichever cause is hidden)")
    for key in ("suggested_lr", "min_lr", "min_over_10_lr"):
        print(f"    {key:<14} {summary([f[key] for f in finder])}")
    blow = [f["lrs"][-1] for f in finder]
    print(f"    stopped at lr  {summary(blow)}")
    for seed, f in zip(seeds, finder):
        print(f"      seed {seed}: lowest smoothed loss at lr {f['min_lr']:.3g}, suggested "
              f"{f['suggested_lr']:.3g}, stopped at {f['lrs'][-1]:.3g} ({f['stopped']})")
    print("  run lr: lr_too_high 0.3, lr_too_low 0.003, healthy 0.03 (cosine to a tenth, "
          "after a 5-step warmup)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
