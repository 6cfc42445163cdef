"""`qfit plan`: parse options, call qfit.plan, render (rich or --json). No torch/transformers import on this path."""

from __future__ import annotations

import json

import click

from qfit.errors import QfitError
from qfit.units import parse_int_list, parse_positive_int, parse_tokens

# Matrix defaults: the accelerators and recipes people compare most often (override with --gpu / --precision lists).
DEFAULT_GPUS = ["rtx-4090", "rtx-5090", "rtx-a6000", "l40s", "a100-80gb-sxm4", "h100-sxm", "h200-sxm", "b200",
                "mi300x", "m4-max-40c"]
DEFAULT_PRECISIONS = ["bf16", "fp8", "gptq-int8", "gptq-int4", "awq-int4", "gguf-q8_0", "gguf-q4_k_m"]


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("plan")
@click.option("--model", "-m", required=True, help="Catalog name, hub id (org/name), local folder, or .gguf file.")
@click.option("--gpu", "-g", help="Accelerator (fuzzy: A6000, h100, 'M3 Max 96GB', cpu); comma list for a matrix.")
@click.option("--gpus", "-n", default="1", show_default=True, help="Number of accelerators (tensor parallel).")
@click.option("--precision", "-p", help="fp32 bf16 fp16 fp8 int8 gptq-int{2,3,4,8} awq-int4 nf4 mxfp4 gguf-<type>; "
                                        "comma list for a matrix. Default: what the checkpoint ships in.")
@click.option("--group-size", type=int, help="GPTQ/AWQ group size (default 128; -1 = per column).")
@click.option("--context", "-c", help="Context length in tokens (8192, 32k). Default 8k or the model's maximum.")
@click.option("--batch", "-b", default="1", show_default=True, help="Concurrent sequences; a list (1,8,32) prints a curve.")
@click.option("--input-len", help="Prompt tokens for prefill/TTFT (default: the context).")
@click.option("--output-len", help="Generated tokens for end-to-end time (optional).")
@click.option("--engine", "-e", help="transformers | vllm | sglang | llama.cpp, or a name they stand for (hf, trtllm, "
                                     "tgi, ollama ...). Default: vllm on GPUs, llama.cpp for GGUF, transformers on "
                                     "Apple/CPU.")
@click.option("--kv-dtype", help="KV cache dtype: fp16 bf16 fp8 q8_0 q4_0 (default: the engine's default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the contract in DESIGN.md) instead of tables.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: memory breakdown and tokens/s vs batch "
                                                               "(one --gpu and --precision).")
@click.option("--force", is_flag=True, help="Overwrite an existing --plot file.")
def plan(model, gpu, gpus, precision, group_size, context, batch, input_len, output_len, engine, kv_dtype, as_json,
         plot, force):
    """Will it fit, and how fast will it run? Memory, fit verdict, max context/batch and speed.

    With one --gpu and one --precision: the full breakdown. Otherwise a matrix of precisions x accelerators.
    """
    from qfit import api, resolve

    n = parse_positive_int(gpus, "--gpus", maximum=4096)
    batches = parse_int_list(batch, "--batch", maximum=1_000_000)
    if group_size is not None and (group_size == 0 or group_size < -1):
        raise QfitError(f"--group-size must be a positive integer or -1, got {group_size}")
    kw = dict(engine=engine, gpus=n, kv_dtype=kv_dtype, group_size=group_size,
              context=parse_tokens(context) if context else None,
              input_len=parse_tokens(input_len, "--input-len") if input_len else None,
              output_len=parse_tokens(output_len, "--output-len") if output_len else None)
    gpu_list, prec_list = _split(gpu), _split(precision)
    loaded = resolve.model(model)
    # A GGUF file or a quantized checkpoint plans in its own format by default (no precision table).
    ships_quantized = loaded.native_precision not in {"bf16", "fp16", "fp32"}
    if len(gpu_list) == 1 and (len(prec_list) == 1 or (not prec_list and ships_quantized)):
        plans = api.plans(loaded, gpu=gpu_list[0], precision=prec_list[0] if prec_list else None, batches=batches,
                          **kw)
        render = "plan" if len(plans) == 1 else "curve"
    else:
        plans = api.matrix(loaded, gpu_list or DEFAULT_GPUS, prec_list or DEFAULT_PRECISIONS, batch=batches[0], **kw)
        if not plans:
            raise QfitError("no compatible precision x accelerator x engine combination to plan")
        render = "precisions" if len(gpu_list) == 1 else "matrix"
    if as_json:
        click.echo(json.dumps(plans[0].to_dict() if render == "plan" else [p.to_dict() for p in plans], indent=2))
    else:
        from qfit import report  # rich only when rendering tables

        getattr(report, f"print_{render}")(plans[0] if render == "plan" else plans)
    if plot:
        _plot(plans, plot, force, as_json)


def _plot(plans, path: str, force: bool, quiet: bool) -> None:
    from qfit.plot import plot_plans

    if len({(p.accelerator.key, p.precision.name) for p in plans}) > 1:
        raise QfitError("--plot draws one configuration: give one --gpu and one --precision")
    plot_plans(plans, path, force=force)
    if not quiet:
        click.echo(f"wrote {path}")
