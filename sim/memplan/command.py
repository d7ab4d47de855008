"""``debugsim memory``: will this model fit on this GPU, and what are the options?

Register with ``cli.add_command(memory_command)``.  Errors are one line on
stderr with exit code 2 (no usage banner, no traceback).
"""
from __future__ import annotations

from dataclasses import asdict

import click

from ..files import json_text
from .accounting import CATEGORIES, METHODS, OPTIMIZER_BYTES, PRECISIONS, Strategy, plan_memory
from .arch import Architecture
from .presets import PRESETS, UnknownModel, get_preset
from .strategies import OPTION_COSTS, closest_strategy, rank_strategies
from .units import SizeError, fmt_bytes, fmt_count, parse_count, parse_size, unit_legend

HINTS = {
    "optimizer_states": "shard them (--zero 1 with --gpus N), --offload them, --optimizer adam8bit, or train fewer params (--method lora)",
    "master_weights": "shard them (--zero 1 with --gpus N), --offload them, or train fewer params (--method lora)",
    "gradients": "shard them (--zero 2 with --gpus N) or train fewer params (--method lora)",
    "weights": "shard them (--zero 3 with --gpus N) or quantise the frozen base (--method qlora)",
    "activations": "--checkpointing, a smaller --batch with gradient accumulation, or --flash",
    "logits": "a smaller micro-batch or sequence (or a chunked cross-entropy kernel)",
    "kv_cache": "fewer concurrent tokens (--batch/--seq), a GQA model, or a quantised/paged KV cache",
    "gather_buffer": "a finer FSDP wrapping unit",
}
ARCH_OPTS = ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab")


class _OneLineErrors(click.Command):
    """Show usage errors as a single ``Error: ...`` line, wherever the command is mounted."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            e.ctx = None
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            e.ctx = None
            raise


def _fail(msg: str, param: str | None = None):
    msg = " ".join(str(msg).split())          # always one line
    if param:
        raise click.BadParameter(msg, param_hint=param)
    raise click.UsageError(msg)


def _resolve_model(model, params, arch_kw, extra):
    given_arch = {k: v for k, v in arch_kw.items() if v is not None}
    if sum(bool(x) for x in (model, params, given_arch)) > 1:
        _fail("give only one of --model, an architecture (--layers --hidden ...) or --params")
    if model:
        try:
            return get_preset(model)
        except UnknownModel as e:
            _fail(str(e), "'--model'")
    if params:
        try:
            return parse_count(params)
        except SizeError as e:
            _fail(str(e), "'--params'")
    if given_arch:
        missing = [k for k in ("layers", "hidden", "heads", "intermediate", "vocab") if k not in given_arch]
        if missing:
            _fail("a custom architecture needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
        try:
            return Architecture(name="custom", **given_arch, **extra)
        except ValueError as e:
            _fail(str(e))
    _fail("say which model: --model NAME (e.g. llama-2-13b), an architecture (--layers --hidden --heads "
          "--intermediate --vocab) or --params 7.5e9")


def _table(plan, unit: str) -> list[str]:
    total = plan.gpu_total or 1
    sharded = plan.strategy.gpus > 1
    head = f"  {'category':<18}{'per GPU':>14}{'share':>8}" + (f"{'all ' + str(plan.strategy.gpus) + ' GPUs':>16}" if sharded else "")
    rows = [head]
    for cat in CATEGORIES:
        v = plan.gpu.get(cat, 0)
        if not v:
            continue
        row = f"  {cat:<18}{fmt_bytes(v, unit):>14}{100 * v / total:>7.1f}%"
        rows.append(row + (f"{fmt_bytes(v * plan.strategy.gpus, unit):>16}" if sharded else ""))
    rows.append(f"  {'total':<18}{fmt_bytes(plan.gpu_total, unit):>14}{'':>8}"
                + (f"{fmt_bytes(plan.all_gpus_total, unit):>16}" if sharded else ""))
    for cat, v in plan.cpu.items():
        rows.append(f"  {'CPU: ' + cat:<18}{fmt_bytes(v, unit):>14}  (CPU RAM per rank, not GPU)")
    if plan.cpu:
        rows.append(f"  {'CPU total':<18}{fmt_bytes(plan.cpu_total, unit):>14}  per rank"
                    + (f", {fmt_bytes(plan.cpu_total * plan.strategy.gpus, unit)} over {plan.strategy.gpus} ranks"
                       if sharded else ""))
    return rows


@click.command("memory", cls=_OneLineErrors)
@click.option("--model", help=f"preset: {', '.join(PRESETS)}")
@click.option("--layers", type=int, help="custom architecture: transformer layers")
@click.option("--hidden", type=int, help="custom architecture: hidden size")
@click.option("--heads", type=int, help="custom architecture: attention heads")
@click.option("--kv-heads", type=int, help="custom architecture: key/value heads (GQA; default = heads)")
@click.option("--intermediate", type=int, help="custom architecture: MLP intermediate size")
@click.option("--vocab", type=int, help="custom architecture: vocabulary size")
@click.option("--mlp", type=click.Choice(["gated", "plain"]), default="gated", show_default=True,
              help="custom: gated = SwiGLU (3 matrices), plain = GELU/ReLU (2)")
@click.option("--positional", type=click.Choice(["rotary", "learned"]), default="rotary", show_default=True,
              help="custom: rotary (no params) or a learned position table")
@click.option("--max-positions", type=int, default=4096, show_default=True, help="custom: context length")
@click.option("--tied-embeddings", is_flag=True, help="custom: LM head shares the input embedding")
@click.option("--params", help="just a parameter count (7.5e9, 13B): model-state arithmetic only")
@click.option("--method", type=click.Choice(METHODS), default="full", show_default=True)
@click.option("--lora-rank", type=int, help="LoRA rank r (default 16)")
@click.option("--lora-targets", help="comma list of q,k,v,o,gate,up,down | attention | mlp | all-linear (default q,v)")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_BYTES)), help="adamw (8 B/param), sgd (4), adam8bit (2); default adamw")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="bf16", show_default=True,
              help="16-bit = mixed precision with fp32 master weights")
@click.option("--master-weights/--no-master-weights", default=None,
              help="keep an fp32 master copy in mixed precision (default on)")
@click.option("--double-quant/--no-double-quant", default=None, help="QLoRA double quantisation (default on)")
@click.option("--zero", type=int, help="ZeRO/FSDP stage 0-3 (1: optimizer, 2: +grads, 3: +weights)")
@click.option("--gpus", type=int, help="data-parallel GPUs to shard over (default 1)")
@click.option("--offload", is_flag=True, default=None, help="optimizer states + master weights to CPU RAM")
@click.option("--batch", type=int, help="micro-batch per GPU (default 1)")
@click.option("--seq", type=int, help="sequence length (default 2048, capped at the model's context)")
@click.option("--checkpointing", is_flag=True, default=None, help="full activation checkpointing")
@click.option("--flash/--no-flash", default=None, help="fused attention kernel (default on)")
@click.option("--gpu", "gpu_size", default="80GB", show_default=True,
              help="GPU memory: 24GB, 40GB, 80GB (10^9 B), 80GiB (2^30 B), bare G = GB, or bytes")
@click.option("--inference", is_flag=True, help="serving: weights + KV cache instead of training state")
@click.option("--units", type=click.Choice(["GB", "GiB"]), default="GB", show_default=True,
              help="display unit (JSON is always bytes)")
@click.option("--top", type=int, default=6, show_default=True, help="how many fitting strategies to list")
@click.option("--meta-check", is_flag=True, help="also count parameters on PyTorch's meta device (imports torch)")
@click.option("--crosscheck-tiny", is_flag=True,
              help="compare the planner with the simulated device's allocation tracker on "
                   "debugsim's own tiny model (trains 2 steps; imports torch), then exit")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output, every figure in bytes")
@click.option("--plot", type=click.Path(dir_okay=False), help="write a stacked bar PNG here")
def memory_command(model, layers, hidden, heads, kv_heads, intermediate, vocab, mlp, positional,
                   max_positions, tied_embeddings, params, method, lora_rank, lora_targets, optimizer,
                   precision, master_weights, double_quant, zero, gpus, offload, batch, seq, checkpointing,
                   flash, gpu_size, inference, units, top, meta_check, crosscheck_tiny, as_json, plot):
    """Will it fit? GPU memory for training or serving a model, and the strategies that fit."""
    if crosscheck_tiny:
        from .crosscheck import crosscheck, render
        click.echo(render(crosscheck()))
        return
    for name, v in dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate,
                        vocab=vocab, lora_rank=lora_rank, gpus=gpus, batch=batch, seq=seq,
                        max_positions=max_positions).items():
        if v is not None and v <= 0:
            _fail(f"must be a positive integer, got {v}", "'--" + name.replace("_", "-") + "'")
    if top < 0:
        _fail("must not be negative", "'--top'")
    if zero is not None and zero not in (0, 1, 2, 3):
        _fail(f"ZeRO stage must be 0, 1, 2 or 3, got {zero}", "'--zero'")
    try:
        gpu_bytes = parse_size(gpu_size)
    except SizeError as e:
        _fail(str(e), "'--gpu'")
    if gpu_bytes < 2**20:
        _fail(f"{gpu_size!r} is only {gpu_bytes} bytes; write a unit, e.g. {gpu_size}GB or {gpu_size}GiB", "'--gpu'")

    target = _resolve_model(model, params, dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                                                intermediate=intermediate, vocab=vocab),
                            dict(mlp=mlp, positional=positional, max_positions=max_positions,
                                 tied_embeddings=tied_embeddings))
    arch = target if isinstance(target, Architecture) else None

    # ---- conflicting options ------------------------------------------------
    if method == "full" and (lora_rank is not None or lora_targets is not None):
        _fail("--lora-rank/--lora-targets need --method lora or qlora")
    if method != "qlora" and double_quant is not None:
        _fail("--double-quant/--no-double-quant only apply to --method qlora")
    if inference:
        clash = [o for o, v in (("--optimizer", optimizer), ("--zero", zero), ("--offload", offload),
                                ("--checkpointing", checkpointing), ("--master-weights", master_weights))
                 if v is not None] + (["--gpus"] if gpus and gpus > 1 else [])
        if clash:
            _fail(f"training-only option(s) {', '.join(clash)} conflict with --inference")
        if method == "lora" and (lora_rank or lora_targets):
            _fail("--inference assumes LoRA adapters are merged; drop --lora-rank/--lora-targets")
    if arch is None:
        clash = [o for o, v in (("--batch", batch), ("--seq", seq), ("--checkpointing", checkpointing),
                                ("--flash", flash), ("--meta-check", meta_check or None)) if v is not None]
        if clash:
            _fail(f"{', '.join(clash)} need an architecture (--model or --layers ...), not just --params")
        if method != "full" or inference:
            _fail("LoRA, QLoRA and --inference need an architecture (--model or --layers ...), not just --params")
    if seq is None:
        seq = min(2048, arch.max_positions) if arch is not None else 2048

    kw = dict(method=method, precision=precision, seq=seq, inference=inference)
    for k, v in dict(lora_rank=lora_rank, optimizer=optimizer, master_weights=master_weights,
                     double_quant=double_quant, zero=zero, gpus=gpus, offload=offload, batch=batch,
                     checkpointing=checkpointing, flash=flash).items():
        if v is not None:
            kw[k] = v
    if lora_targets is not None:
        kw["lora_targets"] = lora_targets
    try:
        strategy = Strategy(**kw)
        plan = plan_memory(target, strategy)
    except ValueError as e:
        _fail(str(e))

    ranked = rank_strategies(target, gpu_bytes, plan.strategy)
    closest = None if ranked else closest_strategy(target, plan.strategy)
    meta = None
    if meta_check:
        from .arch import meta_param_count
        meta = meta_param_count(arch)

    if as_json:
        out = plan.to_dict(gpu_bytes)
        out["units_note"] = "all sizes in bytes; GB = 10^9 bytes, GiB = 2^30 bytes"
        out["gpu_size_input"] = gpu_size
        if arch is not None:
            out["architecture"] = asdict(arch)
            out["param_breakdown"] = arch.param_breakdown()
            out["param_count_notes"] = arch.count_notes()
        out["ranked"] = [r.to_dict(gpu_bytes) for r in ranked]
        out["closest"] = closest.to_dict(gpu_bytes) if closest else None
        out["option_costs"] = {k: {"cost": c, "reason": why} for k, (c, why) in OPTION_COSTS.items()}
        if meta is not None:
            out["meta_check"] = {**meta, "analytic": arch.num_params, "agree": meta["parameters"] == arch.num_params}
    if plot:
        from .chart import plot_plans
        bars = [(f"requested: {plan.strategy.label()}", plan)]
        bars += [(r.label, r.plan) for r in ranked[:max(top, 1)] if r.label != plan.strategy.label()]
        if closest is not None:
            bars.append((f"closest: {closest.label}", closest.plan))
        title = f"{plan.model}: {'serving' if inference else 'training'} memory per GPU vs {fmt_bytes(gpu_bytes, units)} GPU"
        try:
            plot_plans(bars, gpu_bytes, plot, unit=units, title=title)
        except OSError as e:
            _fail(f"cannot write {plot}: {e.strerror or e}", "'--plot'")
        if as_json:
            out["plot"] = plot
    if as_json:
        click.echo(json_text(out, indent=2))
        return

    # ---- text report ----------------------------------------------------------
    lines = [f"model      {plan.model}: {fmt_count(plan.params)} params"
             + (f", trainable {fmt_count(plan.trainable_params)}"
                if plan.trainable_params != plan.params and not inference else "")]
    if arch is not None:
        lines.append(f"           {arch.describe()}")
    decimal = gpu_size.strip().upper().endswith(("G", "GB"))
    lines += [f"strategy   {plan.strategy.describe(activations=arch is not None)}",
              f"units      {unit_legend(units)} (JSON: bytes); GPU {gpu_size!r} = {gpu_bytes:,} bytes"
              + (" (bare G read as GB = 10^9)" if gpu_size.strip().upper().endswith("G") else "")]
    if decimal:
        lines.append(f"           (a card sold as '{gpu_bytes / 1e9:g}GB' usually has {gpu_bytes / 1e9:g} GiB = "
                     f"{fmt_bytes(gpu_bytes / 1e9 * 2**30, units)}; pass {gpu_bytes / 1e9:g}GiB to plan for that)")
    lines.append("")
    lines += _table(plan, units)
    fits = plan.fits(gpu_bytes)
    lines += ["", f"verdict    {'FITS' if fits else 'DOES NOT FIT'} on a {fmt_bytes(gpu_bytes, units)} GPU",
              f"why        {plan.why(gpu_bytes, units)}"]
    if not fits:
        top_cat = plan.dominant(1)[0][0]
        lines.append(f"hint       largest category is {top_cat}: {HINTS.get(top_cat, '')}")
    elif plan.headroom(gpu_bytes) < 0.05 * gpu_bytes:
        lines.append("caution    under 5% headroom: CUDA context and allocator fragmentation typically take 1-3 GB")
    for n in plan.notes + (arch.count_notes() if arch is not None and meta else []):
        lines.append(f"note       {n}")
    if meta is not None:
        ok = "agrees exactly" if meta["parameters"] == arch.num_params else "DISAGREES"
        lines.append(f"meta-check {meta['parameters']:,} parameters counted on the meta device: {ok} with the "
                     f"analytic {arch.num_params:,}; buffers {meta['buffers']:,} elements (not parameters)")
    lines.append("")
    if ranked:
        lines.append(f"strategies that fit {fmt_bytes(gpu_bytes, units)} per GPU, cheapest in quality/speed first "
                     "(minimal combinations only):")
        for i, r in enumerate(ranked[:top], 1):
            cpu = f" + {fmt_bytes(r.plan.cpu_total, units)} CPU" if r.plan.cpu_total else ""
            reason = "; ".join(OPTION_COSTS[o][1] for o in r.options) or "no memory-saving compromise needed"
            lines.append(f"  {i}. {r.label:<26}{fmt_bytes(r.plan.gpu_total, units):>12}/GPU{cpu}  cost {r.cost:<3} {reason}")
        if len(ranked) > top:
            lines.append(f"  ... {len(ranked) - top} more (--top N or --json)")
    else:
        lines.append(f"nothing fits {fmt_bytes(gpu_bytes, units)} per GPU; the smallest combination is "
                     f"{closest.label} at {fmt_bytes(closest.plan.gpu_total, units)} per GPU "
                     "(add GPUs with --gpus N and --zero 3, or shorten --seq / --batch)")
    if plot:
        lines.append(f"plot       {plot}")
    click.echo("\n".join(lines))
