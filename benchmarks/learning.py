"""How much do the healthy training scenarios learn? Held-out loss against the two baselines.

For each training scenario (not the memory planner) this runs the healthy base on seeds 0-9 and
prints the held-out loss (mean / min / max) next to the unigram baseline (predicting word
frequencies: nothing of the grammar learnt), the entropy floor (the true generator's own loss)
and the criterion's bar, with the share of the way from the baseline to the floor that the bar
and the worst seed stand at. It also times each run (in-process, torch already imported).

    .venv/bin/python benchmarks/learning.py                       # all training scenarios
    .venv/bin/python benchmarks/learning.py nan_loss --seeds 0-4   # one scenario, fewer seeds
    .venv/bin/python benchmarks/learning.py bad_lr --cause lr_too_low
    .venv/bin/python benchmarks/learning.py nan_loss --set lr=0.001  # try a base override

Exit status 1 if a healthy run misses its criterion on any seed (without --cause/--set/--fix).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time


def seed_list(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="scenario ids (default: every training one)")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2 (default 0-9)")
    parser.add_argument("--cause", help="run this cause instead of the healthy base")
    parser.add_argument("--fix", action="append", default=[], help="apply a fix (repeatable)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="key=value added to the base (repeatable), to try a new base")
    args = parser.parse_args(argv)

    import torch
    from debugsim.sim import registry
    from debugsim.sim.config import parse_assignments
    from debugsim.sim.data import baselines
    from debugsim.sim.app import simulate as execute

    torch.set_num_threads(1)
    ids = args.scenarios or [s.id for s in registry.all_scenarios() if s.engine == "training"]
    seeds = seed_list(args.seeds)
    overrides = parse_assignments(args.sets)
    what = f"cause {args.cause}" if args.cause else "healthy base"
    if args.fix:
        what += " + fix " + ", ".join(args.fix)
    if overrides:
        what += " with " + " ".join(args.sets)
    print(f"held-out loss of the {what}, seeds {args.seeds}; nats per supervised token")
    head = ("scenario", "mean", "min", "max", "unigram", "floor", "bar", "bar at", "worst at",
            "passed", "s/run")
    rows, failed = [], False
    for sid in ids:
        scenario = registry.get(sid)
        if overrides:
            scenario = dataclasses.replace(scenario, base={**scenario.base, **overrides})
        from debugsim.sim.app import prepare
        ref = baselines(prepare(scenario, 0).config)
        losses, seconds, passed = [], [], 0
        for seed in seeds:
            start = time.perf_counter()
            result = execute(scenario, seed, args.cause, args.fix)
            seconds.append(time.perf_counter() - start)
            losses.append(result.summary["eval_loss"])
            ok = all(check.ok for check in scenario.criterion.judge(result.summary))
            passed += ok
            print(f"  {sid} seed {seed}: held-out {losses[-1]:.4f}  "
                  f"final {result.summary['final_loss']:.4f}  "
                  f"{'pass' if ok else 'FAIL'}  {seconds[-1]:.2f} s", file=sys.stderr, flush=True)
        bar = scenario.criterion.eval_bar
        finite = [x for x in losses if x == x]
        worst = max(finite) if len(finite) == len(losses) else float("nan")
        failed |= passed < len(seeds)
        rows.append((sid, *(f"{f(finite):.3f}" if finite else "nan"
                            for f in (statistics.fmean, min)),
                     f"{worst:.3f}", f"{ref.unigram:.3f}", f"{ref.floor:.3f}",
                     f"{bar:.3f}" if bar is not None else "-",
                     f"{ref.learnt(bar):.0%}" if bar is not None else "-",
                     f"{ref.learnt(worst):.0%}", f"{passed}/{len(seeds)}",
                     f"{statistics.median(seconds):.2f}"))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    print("bar at / worst at: how far the bar / the worst seed's held-out loss has come from "
          "the unigram baseline (0%) to the floor (100%); the criterion needs >= 50%.")
    return 1 if failed and not (args.cause or args.fix or overrides) else 0


if __name__ == "__main__":
    sys.exit(main())
