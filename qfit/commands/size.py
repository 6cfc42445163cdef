"""`qfit size`: parse options, call qfit.size.size, render (rich tables, --json or --csv). No torch import."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qfit.commands.aliases import renamed
from qfit.errors import QfitError
from qfit.units import parse_float, parse_positive_int, parse_seconds, parse_tokens


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _precisions(value: str | None) -> tuple[str, ...] | None:
    names = _split(value)
    if not names or names == ["auto"]:
        return None
    return tuple(names)


@click.command("size", cls=renamed({"--input-tokens": "--input-len", "--output-tokens": "--output-len"}))
@click.option("--model", "-m", required=True, help="Catalog name, hub id (org/name), local folder, or .gguf file.")
@click.option("--context", "-c", default="8k", show_default=True, help="Tokens of KV reserved per user (8192, 32k).")
@click.option("--concurrency", "-u", required=True, help="Users decoding at the same time.")
@click.option("--rps", help="Requests per second to sustain (needs --input-len and --output-len).")
@click.option("--input-len", help="Prompt tokens per request (TTFT, prefill work). Default: the context.")
@click.option("--output-len", help="Generated tokens per request.")
@click.option("--min-tokens-per-s", help="Per-user decode speed floor (tokens/s).")
@click.option("--max-ttft", help="Time-to-first-token ceiling (2s, 500ms).")
@click.option("--precision", "-p", default="auto", show_default=True,
              help="auto (bf16,fp8,gptq-int8,gptq-int4,awq-int4,gguf-q8_0,gguf-q4_k_m) or a comma list.")
@click.option("--engine", "-e", help="vllm | sglang | llama.cpp | transformers, or a comma list. Default: vllm on "
                                     "GPUs, llama.cpp for GGUF, transformers on Apple.")
@click.option("--kv-dtype", help="KV cache dtype (default: the engine's default for each precision).")
@click.option("--gpus-allowed", help="Comma list of accelerators (A100,H100,L40S,...). Default: the whole catalog.")
@click.option("--max-gpus-per-node", default="8", show_default=True, help="Largest tensor-parallel group (one node).")
@click.option("--max-gpus", default="64", show_default=True, help="Total GPUs over all replicas.")
@click.option("--max-nodes", default="4", show_default=True,
              help="Most nodes one replica may span (TP within a node, a pipeline stage per node, as `qfit plan "
                   "--nodes`; vLLM/SGLang only). Tried for replicas larger than one node's TP group, while they could "
                   "cost less than the single-node options; 1 = single-node replicas only.")
@click.option("--internode", help="Link between the nodes of a multi-node replica (profiles/planner/internode.yaml: "
                                  "infiniband-ndr, infiniband-hdr, ethernet-100g). Default: infiniband-ndr, as plan.")
@click.option("--prices", type=click.Path(dir_okay=False), help="YAML/CSV overriding prices: name,usd_per_hour[,list_usd].")
@click.option("--hours-per-month", default="730", show_default=True, help="Hours a month (rent and power).")
@click.option("--months", default="36", show_default=True, help="Purchase horizon for TCO.")
@click.option("--power-cost", default="0.12", show_default=True, help="Electricity $/kWh.")
@click.option("--top", default="10", show_default=True, help="Rows per ranking.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the contract in docs/json.md) instead of tables.")
@click.option("--wide", is_flag=True, help="Every table column, however wide (default: fit the terminal, or 100 "
                                           "columns when not a terminal).")
@click.option("--csv", "as_csv", is_flag=True, help="Print every feasible configuration as CSV.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: rent $/h vs total throughput, frontier.")
@click.option("--force", is_flag=True, help="Overwrite the --plot file if it exists.")
def size(model, context, concurrency, rps, input_len, output_len, min_tokens_per_s, max_ttft, precision, engine,
         kv_dtype, gpus_allowed, max_gpus_per_node, max_gpus, max_nodes, internode, prices, hours_per_month, months, power_cost, top, as_json,
         wide, as_csv, plot, force):
    """Procurement: the cheapest hardware (rent or buy) that serves a workload, and why the cheaper options fail."""
    from qfit.api import size as run
    from qfit.size import CostParams, load_prices
    from qfit.size.nodes import MAX_NODES
    from qfit.workload import Workload

    if as_json and as_csv:
        raise QfitError("choose one of --json and --csv")
    if plot:
        from qfit.atomic import check_writable, refuse_existing, refuse_overlap

        refuse_overlap(Path(plot), [model])
        check_writable(Path(plot)) if force else refuse_existing(Path(plot))
    w = Workload(
        context=parse_tokens(context), batch=_concurrency(concurrency),
        rps=parse_float(rps, "--rps") if rps is not None else None,
        input_tokens=parse_tokens(input_len, "--input-len") if input_len is not None else None,
        output_tokens=parse_tokens(output_len, "--output-len") if output_len is not None else None,
        min_tokens_per_s=parse_float(min_tokens_per_s, "--min-tokens-per-s") if min_tokens_per_s is not None else None,
        max_ttft_s=parse_seconds(max_ttft) if max_ttft is not None else None)
    costs = CostParams(hours_per_month=parse_float(hours_per_month, "--hours-per-month"),
                       months=parse_positive_int(months, "--months", maximum=600),
                       power_usd_per_kwh=parse_float(power_cost, "--power-cost", allow_zero=True),
                       prices=load_prices(prices) if prices is not None else None)
    if costs.hours_per_month > 744:
        raise QfitError(f"--hours-per-month {hours_per_month} exceeds the 744 hours of a 31-day month")
    total = parse_positive_int(max_gpus, "--max-gpus", maximum=4096)
    result = run(model, w, gpus_allowed=_split(gpus_allowed) or None, precisions=_precisions(precision),
                 engines=tuple(_split(engine)) or None, kv_dtype=kv_dtype,
                 max_gpus_per_node=parse_positive_int(max_gpus_per_node, "--max-gpus-per-node", maximum=4096),
                 max_total_gpus=total, costs=costs, top=parse_positive_int(top, "--top", maximum=1000),
                 max_nodes=parse_positive_int(max_nodes, "--max-nodes", maximum=MAX_NODES), internode=internode)
    n = parse_positive_int(top, "--top", maximum=1000)
    if as_json:
        click.echo(json.dumps(result.to_dict(top=n), indent=2))
    elif as_csv:
        from qfit.size.render import csv_text

        click.echo(csv_text(result), nl=False)
    else:
        from qfit.size.render import print_size

        print_size(result, top=n, wide=wide)
    if plot:
        from qfit.size.render import write_plot

        write_plot(result, plot, force=force)
        if not (as_json or as_csv):
            click.echo(f"wrote {plot}")


def _concurrency(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise QfitError(f"cannot read --concurrency {text!r}: expected a whole number of users") from None
    if value < 1:
        raise QfitError(f"--concurrency must be at least 1 user, got {value}: nothing to size for zero users")
    return parse_positive_int(value, "--concurrency", maximum=1_000_000)
