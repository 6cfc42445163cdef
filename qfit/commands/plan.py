"""`qfit plan`: parse options, call qfit.plan, render (rich or --json). No torch/transformers import on this path."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qfit.errors import QfitError
from qfit.survey import SORTS
from qfit.units import parse_count, parse_int_list, parse_positive_int, parse_tokens

# Matrix defaults: the accelerators and recipes people compare most often (override with --gpu / --precision lists).
DEFAULT_GPUS = ["rtx-4090", "rtx-5090", "rtx-a6000", "l40s", "a100-80gb-sxm4", "h100-sxm", "h200-sxm", "b200",
                "mi300x", "m4-max-40c"]
DEFAULT_PRECISIONS = ["bf16", "fp8", "gptq-int8", "gptq-int4", "awq-int4", "gguf-q8_0", "gguf-q4_k_m"]


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("plan")
@click.option("--model", "-m", help="Catalog name, hub id (org/name), local folder, or .gguf file. Without it: every "
                                    "catalog model on --gpu, ranked (what runs on this hardware).")
@click.option("--gpu", "-g", help="Accelerator (fuzzy: A6000, h100, 'M3 Max 96GB', cpu, auto = detect this machine); "
                                  "comma list for a matrix. Default without --model: auto.")
@click.option("--gpus", "-n", help="Number of accelerators (tensor parallel). Default 1; with --gpu auto, the count "
                                   "detected; with --nodes, all of them (= nodes x gpus per node).")
@click.option("--nodes", help="Machines the deployment spans: tensor parallel within each, one pipeline stage per "
                              "node (vllm, sglang). Default 1.")
@click.option("--gpus-per-node", help="Accelerators in each node (with --nodes; default --gpus / --nodes).")
@click.option("--internode", help="Link between nodes, from profiles/planner/internode.yaml: infiniband-ndr "
                                  "(400 Gb/s, the default), infiniband-hdr, ethernet-100g.")
@click.option("--precision", "-p", help="fp32 bf16 fp16 fp8 int8 gptq-int{2,3,4,8} awq-int4 nf4 mxfp4 gguf-<type> "
                                        "(Q4_K_M; Unsloth UD-Q4_K_XL is planned as its base mix, said in the "
                                        "assumptions); comma list for a matrix. Default: what the checkpoint ships in.")
@click.option("--group-size", type=int, help="GPTQ/AWQ group size (default 128; -1 = per column).")
@click.option("--context", "-c", help="Context length in tokens (8192, 32k). Default 8k or the model's maximum.")
@click.option("--batch", "-b", default="1", show_default=True, help="Concurrent sequences; a list (1,8,32) prints a curve.")
@click.option("--input-len", help="Prompt tokens for prefill/TTFT (default: the context).")
@click.option("--output-len", help="Generated tokens for end-to-end time (optional).")
@click.option("--engine", "-e", help="transformers | vllm | sglang | llama.cpp, or a name they stand for (hf, trtllm, "
                                     "tgi, ollama ...). Default: vllm on GPUs, llama.cpp for GGUF, transformers on "
                                     "Apple/CPU.")
@click.option("--launch", is_flag=False, flag_value="auto", default=None,
              help="After the plan, the command(s) that start the server on it: vllm | sglang | llama.cpp (sets the "
                   "engine), or bare --launch for the plan's engine. Per node with --nodes; in --json, a `launch` "
                   "object.")
@click.option("--ram", help="Host memory the model may also use (64GB): when the GPUs alone do not hold it, llama.cpp "
                            "offloads MoE experts (--n-cpu-moe) or layers (-ngl) to it. One --gpu and --precision.")
@click.option("--ram-bandwidth", help="With --ram: sustained host memory bandwidth (80GB/s). Default: --cpu's figure, "
                                      "else a dual-channel DDR5-5600 desktop (assumed, said so).")
@click.option("--cpu", help="With --ram: the host CPU, for its platform's memory bandwidth (e.g. 'EPYC 9654'; 'host' = "
                            "this machine's recorded figure).")
@click.option("--spec", help="Speculative decoding with the model's own MTP layer: mtp or mtp:N (N draft tokens per "
                             "step). Off by default; needs --spec-acceptance. vLLM/SGLang.")
@click.option("--spec-acceptance", help="With --spec: the share (0-1) of draft tokens accepted, from your server's "
                                        "speculative-decoding metrics (depends on the text; no default).")
@click.option("--text-only", is_flag=True, help="Multimodal checkpoints: leave the vision tower out (GGUF files never "
                                               "hold it: it is a separate mmproj file).")
@click.option("--kv-dtype", help="KV cache dtype: fp16 bf16 fp8 q8_0 q4_0 (default: the engine's default).")
@click.option("--models", help="Without --model: these models only (comma list, or a file with one per line).")
@click.option("--family", help="Without --model: one family (qwen3.5, llama-3.1, gemma-3 ...).")
@click.option("--min-params", help="Without --model: at least this many parameters (7B, 500M).")
@click.option("--max-params", help="Without --model: at most this many parameters.")
@click.option("--moe/--dense", "moe", default=None, help="Without --model: MoE models only, or dense only.")
@click.option("--sort", type=click.Choice(SORTS), default="size", show_default=True,
              help="Without --model: largest models first, fastest decode first, or least quality loss first.")
@click.option("--top", help="Without --model: show the first N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the contract in docs/json.md) instead of tables.")
@click.option("--wide", is_flag=True, help="Every table column, however wide (default: fit the terminal, or 100 "
                                           "columns when not a terminal).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: memory breakdown and tokens/s vs batch "
                                                               "(one --gpu and --precision).")
@click.option("--force", is_flag=True, help="Overwrite an existing --plot file.")
def plan(model, gpu, gpus, nodes, gpus_per_node, internode, precision, group_size, context, batch, input_len,
         output_len, engine, launch, ram, ram_bandwidth, cpu, spec, spec_acceptance, text_only, kv_dtype, models,
         family, min_params, max_params, moe, sort, top, as_json, wide, plot, force):
    """Will it fit, and how fast will it run? Memory, fit verdict, max context/batch and speed.

    With one --gpu and one --precision: the full breakdown. Otherwise a matrix of precisions x accelerators.
    Without --model: every catalog model on --gpu (default: this machine's), at its most faithful precision that
    fits, ranked.

    --launch prints the server command(s) for the plan (flags read from the engines' own source,
    profiles/engines/launch/); --nodes N --gpus-per-node G plans N machines (TP within a node, PP across).
    """
    from qfit import api, resolve
    from qfit.launch.layout import node_layout

    n = parse_positive_int(gpus, "--gpus", maximum=4096) if gpus is not None else None
    multi = nodes is not None or gpus_per_node is not None or internode is not None
    n_nodes = parse_positive_int(nodes, "--nodes", maximum=64) if nodes is not None else None
    per_node = parse_positive_int(gpus_per_node, "--gpus-per-node", maximum=64) if gpus_per_node is not None else None
    if internode is not None and (n_nodes or 1) == 1:
        raise QfitError("--internode is the link between nodes: give it with --nodes 2 or more")
    if multi:
        n, n_nodes = node_layout(n, n_nodes, per_node)
    engine = _launch_engine(launch, engine)
    batches = parse_int_list(batch, "--batch", maximum=1_000_000)
    if group_size is not None and (group_size == 0 or group_size < -1):
        raise QfitError(f"--group-size must be a positive integer or -1, got {group_size}")
    lengths = dict(context=parse_tokens(context) if context is not None else None,
                   input_len=parse_tokens(input_len, "--input-len") if input_len is not None else None,
                   output_len=parse_tokens(output_len, "--output-len") if output_len is not None else None)
    survey_flags = {"--models": models, "--family": family, "--min-params": min_params, "--max-params": max_params,
                    "--moe/--dense": moe, "--top": top}
    if model is None:
        for flag, value in (("--launch", launch), ("--nodes", nodes), ("--gpus-per-node", gpus_per_node),
                            ("--precision", precision), ("--group-size", group_size), ("--kv-dtype", kv_dtype),
                            ("--plot", plot), ("--ram", ram), ("--text-only", text_only or None), ("--spec", spec)):
            if value is not None:
                raise QfitError(f"{flag} needs --model (without it, each model's precision is chosen for it)")
        if len(batches) > 1:
            raise QfitError("a --batch list needs --model (without it, one batch for every model)")
        _survey(api, gpu, n, batches[0], lengths, engine, survey_flags, sort, as_json, wide)
        return
    given = [flag for flag, value in survey_flags.items() if value is not None]
    if given:
        raise QfitError(f"{', '.join(given)} select models: use them without --model")
    kw = dict(engine=engine, gpus=n or 1, kv_dtype=kv_dtype, group_size=group_size, text_only=text_only, **lengths)
    gpu_list, prec_list = _split(gpu), _split(precision)
    loaded = resolve.model(model)
    # A GGUF file or a quantized checkpoint plans in its own format by default (no precision table).
    ships_quantized = loaded.native_precision not in {"bf16", "fp16", "fp32"}
    single = len(gpu_list) == 1 and (len(prec_list) == 1 or (not prec_list and ships_quantized))
    if plot:
        _check_plot(plot, force, single, model)
    if (launch or multi) and not (single and len(batches) == 1):
        raise QfitError(f"{'--launch' if launch else '--nodes'} needs one configuration: one --gpu, one --precision "
                        "and one --batch")
    host = dict(ram=ram, ram_bandwidth=ram_bandwidth, cpu=cpu, spec=spec, spec_acceptance=spec_acceptance)
    if not single and any(v is not None for v in host.values()):
        raise QfitError("--ram and --spec plan one configuration: give one --gpu and one --precision")
    if single:
        plans = api.plans(loaded, gpu=gpu_list[0], precision=prec_list[0] if prec_list else None, batches=batches,
                          nodes=n_nodes or 1, internode=internode, **kw, **host)
        render = "plan" if len(plans) == 1 else "curve"
    else:
        plans = api.matrix(loaded, gpu_list or DEFAULT_GPUS, prec_list or DEFAULT_PRECISIONS, batch=batches[0], **kw)
        if not plans:
            raise QfitError("no compatible precision x accelerator x engine combination to plan")
        render = "precisions" if len(gpu_list) == 1 else "matrix"
    launch_plan = None
    if launch:
        from qfit.launch import build_launch

        given = click.get_current_context().get_parameter_source("batch") != click.core.ParameterSource.DEFAULT
        launch_plan = build_launch(plans[0], cap=given)
    if as_json:
        out = plans[0].to_dict() if render == "plan" else [p.to_dict() for p in plans]
        if launch_plan:
            out["launch"] = launch_plan.to_dict()
        click.echo(json.dumps(out, indent=2))
    else:
        from qfit import report  # rich only when rendering tables

        getattr(report, f"print_{render}")(plans[0] if render == "plan" else plans, wide=wide)
        if launch_plan:
            from qfit.launch import render_text

            click.echo(render_text(launch_plan))
    if plot:
        _plot(plans, plot, force, as_json)


def _launch_engine(launch: str | None, engine: str | None) -> str | None:
    """--launch ENGINE plans under that engine; with --engine as well, the two must agree."""
    if launch in (None, "auto"):
        return engine
    if engine and engine.strip().lower() != launch.strip().lower():
        raise QfitError(f"--launch {launch} with --engine {engine}: the commands are for the planned engine; give one "
                        f"of them, or --engine {launch}")
    return launch


def _model_list(value: str | None) -> list[str] | None:
    """--models a,b,c, or a file naming one model per line (# comments)."""
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
        names = [ln for ln in lines if ln]
        if not names:
            raise QfitError(f"--models file {value} names no model")
        return names
    return _split(value)


def _survey(api, gpu, gpus, batch, lengths, engine, flags, sort, as_json, wide) -> None:
    if gpu and "," in gpu:
        raise QfitError("without --model, --gpu names one accelerator (or auto)")
    result = api.survey(gpu, models=_model_list(flags["--models"]), family=flags["--family"],
                        min_params=parse_count(flags["--min-params"]) if flags["--min-params"] is not None else None,
                        max_params=parse_count(flags["--max-params"]) if flags["--max-params"] is not None else None,
                        moe=flags["--moe/--dense"], batch=batch, gpus=gpus, engine=engine, sort=sort,
                        top=parse_positive_int(flags["--top"], "--top") if flags["--top"] is not None else None, **lengths)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    from qfit import report

    report.print_survey(result, wide=wide)


def _check_plot(path: str, force: bool, single: bool, model: str) -> None:
    """Before any planning: one configuration to draw, a writable place that is not the model, --force to replace."""
    from qfit.atomic import check_writable, refuse_existing, refuse_overlap

    if not single:
        raise QfitError("--plot draws one configuration: give one --gpu and one --precision")
    refuse_overlap(Path(path), [model])
    check_writable(Path(path)) if force else refuse_existing(Path(path))


def _plot(plans, path: str, force: bool, quiet: bool) -> None:
    from qfit.plot import plot_plans

    plot_plans(plans, path, force=force)
    if not quiet:
        click.echo(f"wrote {path}")
