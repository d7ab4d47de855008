"""Analytic GPU memory planner: "will it fit?" for training and serving transformers.

Python API (nothing here imports torch or matplotlib at import time)::

    from debugsim.sim.memplan import plan_memory, rank_strategies, parse_size

    plan = plan_memory("llama-2-13b", method="lora", checkpointing=True)
    plan.gpu                      # {"weights": ..., "activations": ..., ...} bytes per GPU
    plan.fits(parse_size("80GB")) # True
    plan.why(parse_size("80GB"))  # one-sentence explanation
    for r in rank_strategies("llama-2-13b", parse_size("80GB")):
        print(r.label, r.cost, r.plan.gpu_total)

Modules: ``units`` (sizes), ``arch`` (shapes, parameter counts, meta-device
mirror), ``presets`` (published configs), ``accounting`` (bytes per category),
``strategies`` (enumerate + rank), ``chart`` (PNG), ``command`` (click CLI).
"""
from .accounting import CATEGORIES, MemoryPlan, Strategy, kv_cache_bytes_per_token, lora_params, plan_memory
from .arch import Architecture, meta_param_count
from .presets import PRESETS, UnknownModel, get_preset
from .strategies import OPTION_COSTS, RankedStrategy, closest_strategy, rank_strategies, strategy_cost
from .units import fmt_bytes, parse_size

__all__ = [
    "Architecture", "CATEGORIES", "MemoryPlan", "OPTION_COSTS", "PRESETS", "RankedStrategy", "Strategy",
    "UnknownModel", "closest_strategy", "fmt_bytes", "get_preset", "kv_cache_bytes_per_token", "lora_params",
    "meta_param_count", "parse_size", "plan_memory", "rank_strategies", "strategy_cost",
]
