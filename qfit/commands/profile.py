"""`qfit profile`: measured quality and speed of a checkpoint vs its baseline and vs the planner's prediction."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from qfit.units import parse_int_list, parse_positive_int, parse_tokens

LOG_NAME = "qfit-profile.log"   # the libraries' output, beside profile.json when --out is given


class _ProfileCommand(click.Command):
    """Remembers whether the short flag -b was typed: it meant --baseline before it meant --batch."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["qfit.short_b"] = any(a == "-b" or (a.startswith("-b") and not a.startswith("--")) for a in args)
        return super().parse_args(ctx, args)


def _batches(value: str, short_b: bool) -> list[int]:
    from qfit.errors import QfitError
    try:
        return parse_int_list(value, "--batch", 4096)
    except QfitError:
        if short_b and re.search(r"[^\d,\s.+eE-]", value):   # a name or path, not a mistyped number list
            raise QfitError(f"-b is now --batch; use --baseline {value}") from None
        raise


def _renamed(ctx: click.Context, new_key: str, new_flag: str, old_value, old_flag: str, notes: list[str]):
    """A flag renamed in this release: the old spelling still works (hidden), once, with a note on stderr."""
    from qfit.errors import QfitError
    if old_value is None:
        return ctx.params[new_key]
    if ctx.get_parameter_source(new_key) is not click.core.ParameterSource.DEFAULT:
        raise QfitError(f"{old_flag} is the old name of {new_flag}: give one of them")
    notes.append(f"note: {old_flag} is now {new_flag} (the old name is accepted until the next release)")
    return old_value


@click.command("profile", cls=_ProfileCommand)
@click.argument("model", required=False)
@click.option("--endpoint", help="Measure a running OpenAI-compatible server at this URL (vLLM, SGLang, llama.cpp, TGI, "
              "Ollama) instead of loading MODEL: streamed /v1/completions at --input-len/--output-len over a -b "
              "concurrency sweep (or --rate).")
@click.option("--model", "plan_model", help="With --endpoint: the model qfit plan should predict for (catalog name, "
              "hub id or config path); with --gpu draws the plan beside the measurement.")
@click.option("--gpu", help="With --endpoint: the server's GPU, for the plan.")
@click.option("--engine", help="With --endpoint: the server's engine, for the plan (vllm, sglang, llama.cpp, ...).")
@click.option("--precision", help="With --endpoint: the served weights' precision, for the plan (e.g. bf16, fp8, "
              "gptq-int4).")
@click.option("--served-model", help="With --endpoint: the model name to request (default: the first of /v1/models).")
@click.option("--requests", help="With --endpoint: requests per level (default 4 x concurrency, at least 8; "
              "with --rate 8 x rate, at least 16).")
@click.option("--rate", help="With --endpoint: request rates (req/s, Poisson arrivals, comma list) instead of -b.")
@click.option("--request-timeout", default="600s", show_default=True, help="With --endpoint: longest a request may "
              "take in all.")
@click.option("--first-token-timeout", default="120s", show_default=True, help="With --endpoint: longest wait for "
              "the first token (queueing included).")
@click.option("--stall-timeout", default="30s", show_default=True, help="With --endpoint: longest silence inside a "
              "stream.")
@click.option("--baseline", "baseline", help="Reference model (float checkpoint) scored with the same protocol.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--backend", default="transformers", show_default=True,
              help="transformers | vllm | llama.cpp (the engine names of `qfit plan --engine`; hf, llamacpp accepted).")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Compute dtype of float weights (transformers/vllm).")
@click.option("--eval", "evals", default=None,
              help="Default: ppl,kl,piqa,mmlu with --baseline, else ppl,piqa,mmlu. Comma list: ppl, kl, mmlu, mmlu-full, piqa, openbookqa, commonsenseqa, siqa, boolq, lmeval:<task>; "
                   "'none' skips quality.")
@click.option("--text", default="xsum", show_default=True,
              help="Perplexity text: xsum, boolq-passages, pydoc or a local .txt/.jsonl/.parquet file (eval split).")
@click.option("--ppl-tokens", default="4096", show_default=True, help="Tokens of the text to score.")
@click.option("--ppl-window", default="512", show_default=True, help="Tokens per forward pass.")
@click.option("--ppl-stride", help="Window step (default: the window, i.e. non-overlapping).")
@click.option("--bos", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Prepend BOS to each window/prompt (auto: as the tokenizer does by default).")
@click.option("--limit", default="200", show_default=True, help="Questions per task (first N, file order).")
@click.option("--input-len", "input_lens", default="128,512,2048", show_default=True,
              help="Prefill prompt lengths in tokens (a comma list); decode runs after the shortest.")
@click.option("--input-lens", "old_input_lens", hidden=True)
@click.option("--batch", "-b", "batches", help="Decode batch sizes (a comma list). Default 1,4,16; 1,4 on a CPU.")
@click.option("--output-len", "output_tokens", help="Tokens decoded per decode trial. Default 128; 32 on a CPU.")
@click.option("--output-tokens", "old_output_tokens", hidden=True)
@click.option("--trials", help="Timed runs per row. Default 5; 3 on a CPU.")
@click.option("--warmup", help="Untimed runs before them. Default 2; 1 on a CPU.")
@click.option("--threads", help="CPU threads for torch / llama.cpp (default: the library's).")
@click.option("--accuracy-weights", type=click.Choice(["auto", "dequantized", "kernel"]), default="auto",
              show_default=True, help="Quality metrics of a GPTQ model on its weights dequantized once to float "
                                      "(same values, float speed) or through the kernels; auto: dequantized on CPU.")
@click.option("--no-speed", is_flag=True, help="Skip the speed measurement.")
@click.option("--tensor-parallel", default="1", show_default=True, help="vLLM tensor-parallel size.")
@click.option("--trust-remote-code", is_flag=True, help="Run the model repository's own code (off by default).")
@click.option("--json", "as_json", is_flag=True, help="Print profile.json to stdout instead of tables.")
@click.option("--wide", is_flag=True, help="Every table column, however wide (default: fit the terminal, or 100 "
                                           "columns when not a terminal).")
@click.option("--out", type=click.Path(file_okay=False), help="Write profile.json, profile.md and qfit-profile.log (the libraries' own output, kept off the "
              "terminal) here.")
@click.option("--plot", is_flag=True, help="With --out: also write PNG plots.")
@click.option("--force", is_flag=True, help="Overwrite existing files in --out.")
def profile(model, endpoint, plan_model, gpu, engine, precision, served_model, requests, rate, request_timeout,
            first_token_timeout, stall_timeout, baseline, device, backend, dtype, evals, text, ppl_tokens, ppl_window, ppl_stride, bos, limit,
            input_lens, old_input_lens, batches, output_tokens, old_output_tokens, trials, warmup, threads,
            accuracy_weights, no_speed,
            tensor_parallel, trust_remote_code, as_json, wide, out, plot, force):
    """What did it cost: accuracy and speed of MODEL against BASE and against `qfit plan`'s prediction; or, with
    --endpoint URL and no MODEL, what a running OpenAI-compatible server delivers (TTFT, ITL, TPOT, latency and
    throughput per concurrency, errors and timeouts), beside the plan when --model and --gpu are given.

    Progress goes to stderr (bars on a terminal, a line per stage and at most every 30 s otherwise); stdout carries
    only the result (--json: nothing but the JSON, whatever the libraries print)."""
    from qfit.errors import QfitError
    from qfit.profile.backends import backend_name, require
    from qfit.profile.run import ProfileOptions, parse_evals

    ctx = click.get_current_context()
    from qfit.endpoint.options import refuse_mixing
    given = {k for k in ctx.params if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    refuse_mixing(given, endpoint, model)
    if endpoint is not None:
        from qfit.endpoint.options import endpoint_options
        opts = endpoint_options(
            endpoint, input_len=input_lens if "input_lens" in given else None, output_len=output_tokens,
            batches=batches, rate=rate, requests=requests, warmup=warmup, text=text, served_model=served_model,
            plan_model=plan_model, gpu=gpu, engine=engine, precision=precision, tensor_parallel=tensor_parallel,
            request_timeout=request_timeout, first_token_timeout=first_token_timeout, stall_timeout=stall_timeout,
            batch_given="batches" in given)
        return _endpoint(opts, as_json, wide, out, plot, force)
    notes: list[str] = []
    input_lens = _renamed(ctx, "input_lens", "--input-len", old_input_lens, "--input-lens", notes)
    output_tokens = _renamed(ctx, "output_tokens", "--output-len", old_output_tokens, "--output-tokens", notes)
    if plot and not out:
        raise QfitError("--plot writes PNG files: pass --out DIR too")
    require(backend_name(backend))  # a missing engine fails before anything is loaded
    batches, output_tokens, trials, warmup = _speed_settings(device, backend_name(backend), no_speed, notes,
                                                             batches, output_tokens, trials, warmup)
    opts = ProfileOptions(
        model=model, baseline=baseline, device=device, backend=backend_name(backend), dtype=dtype,
        evals=parse_evals(evals or ("ppl,kl,piqa,mmlu" if baseline else "ppl,piqa,mmlu"), baseline is not None), text=text,
        ppl_tokens=parse_tokens(ppl_tokens, "--ppl-tokens"), ppl_window=parse_tokens(ppl_window, "--ppl-window"),
        ppl_stride=parse_tokens(ppl_stride, "--ppl-stride") if ppl_stride is not None else None, bos=bos,
        limit=parse_positive_int(limit, "--limit"), input_lens=parse_int_list(input_lens, "--input-len", 1 << 20),
        batches=_batches(batches, ctx.meta.get("qfit.short_b", False)),
        output_tokens=parse_positive_int(output_tokens, "--output-len"),
        trials=parse_positive_int(trials, "--trials", 1000), warmup=int(warmup) if str(warmup) == "0"
        else parse_positive_int(warmup, "--warmup", 1000), threads=parse_positive_int(threads, "--threads", 1024)
        if threads is not None else None, speed=not no_speed, tensor_parallel=parse_positive_int(tensor_parallel, "--tensor-parallel", 64),
        trust_remote_code=trust_remote_code, accuracy_weights=accuracy_weights)
    if opts.speed and opts.output_tokens < 2:
        raise QfitError("--output-len must be at least 2 (TPOT needs a second token)")
    if opts.speed:
        from qfit.profile.defaults import check_batches
        check_batches(opts.batches, opts.backend)
    if opts.baseline is None and not opts.evals and not opts.speed:
        raise QfitError("nothing to do: --eval none and --no-speed")
    _check_paths(opts, out, force, plot)
    from qfit.profile.report import render_rich, validate, write_outputs

    for note in notes:
        click.echo(note, err=True)
    result, log = _run_captured(opts)
    validate(result)
    if out:
        from qfit.atomic import write_text
        written = write_outputs(result, Path(out), force, plot)
        write_text(Path(out) / LOG_NAME, log.read_text(errors="replace"))
        for p in [*written, Path(out) / LOG_NAME]:
            click.echo(f"wrote {p}", err=True)
    log.unlink(missing_ok=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        from qfit.tables import console
        render_rich(result, console(wide=wide), wide=wide)


def _endpoint(opts, as_json: bool, wide: bool, out: str | None, plot: bool, force: bool) -> None:
    from qfit.endpoint.report import check_out, render_rich, write_outputs
    from qfit.endpoint.run import run_endpoint
    from qfit.errors import QfitError
    from qfit.profile.progress import stderr_progress
    if plot and not out:
        raise QfitError("--plot writes PNG files: pass --out DIR too")
    if out:
        check_out(Path(out).expanduser(), force, plot)
    result = run_endpoint(opts, stderr_progress())
    if out:
        for p in write_outputs(result, Path(out).expanduser(), force, plot):
            click.echo(f"wrote {p}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        from qfit.tables import console
        render_rich(result, console(wide=wide), wide=wide)
    if result["interrupted"]:
        raise SystemExit(130)   # the finished levels are written and shown; the exit status still says Ctrl-C


def _speed_settings(device: str, backend: str, no_speed: bool, notes: list[str], *given):
    """--batch, --output-len, --trials, --warmup as given, else the device's defaults (qfit.profile.defaults)."""
    from qfit.profile.defaults import FLAGS, backend_max_batch, device_kind, fill
    values = dict(zip(FLAGS, given))
    if no_speed or all(v is not None for v in values.values()):
        return tuple(v if v is not None else "1" for v in values.values())
    filled, note = fill(values, device_kind(device, backend), backend_max_batch(backend))
    if note:
        notes.append(note)
    return tuple(filled[k] for k in FLAGS)


def _run_captured(opts):
    """Run the profile with the libraries' output (GPTQModel's banner and INFO lines, transformers' warnings and bars,
    on whatever fd they write to) in a temp log, qfit's progress on the terminal. The log is returned for --out; a
    run that fails unexpectedly keeps it and says where, with its last lines, since that is where the cause is."""
    import tempfile

    from qfit.errors import QfitError
    from qfit.profile.progress import stderr_progress
    from qfit.profile.run import run_profile
    from qfit.stdio import capture_output, log_tail, terminal_stream

    term = terminal_stream()
    fd, name = tempfile.mkstemp(prefix="qfit-profile-", suffix=".log")
    os.close(fd)
    log = Path(name)
    try:
        with capture_output(log):
            return run_profile(opts, stderr_progress(term)), log
    except QfitError:
        log.unlink(missing_ok=True)   # qfit's own one-line error says it all
        raise
    except BaseException:
        tail = log_tail(log, 15)
        click.echo(f"the libraries' output is kept in {log}" + (f"; its last lines:\n{tail}" if tail else ""),
                   err=True)
        raise


def _check_paths(opts, out: str | None, force: bool, plot: bool) -> None:
    """Missing local paths fail in one line before any heavy import (hub ids are left to the loader); --out is checked
    before the run (writable, not inside a model, nothing overwritten without --force), not after an hour of it."""
    from qfit.atomic import check_writable, refuse_existing, refuse_overlap
    from qfit.errors import QfitError
    for role, ref in (("model", opts.model), ("baseline", opts.baseline)):
        if ref and (ref.startswith((".", "/", "~")) or ref.endswith(".gguf")) and not Path(ref).expanduser().exists():
            raise QfitError(f"{role} {ref} does not exist")
    if out is None:
        return
    folder = Path(out).expanduser()
    refuse_overlap(folder, [opts.model] + ([opts.baseline] if opts.baseline else []))
    if folder.exists() and not folder.is_dir():
        raise QfitError(f"--out {out} is a file, not a folder")
    check_writable(folder / "profile.json") if folder.is_dir() else check_writable(folder)
    if folder.is_dir() and not force:
        names = ["profile.json", "profile.md", LOG_NAME] + (["retained_accuracy.png", "decode_vs_batch.png"] if plot else [])
        for name in names:
            refuse_existing(folder / name)
