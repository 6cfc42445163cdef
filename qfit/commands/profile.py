"""`qfit profile`: measured quality and speed of a checkpoint vs its baseline and vs the planner's prediction."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from qfit.units import parse_int_list, parse_positive_int, parse_tokens


def _progress_factory(enabled: bool):
    """progress(description, total) -> context manager yielding tick(); rich bars on stderr, silent when disabled."""
    @contextlib.contextmanager
    def progress(description: str, total: int):
        if not enabled:
            yield lambda: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)
    return progress


@click.command("profile")
@click.argument("model")
@click.option("--baseline", "-b", "baseline", help="Reference model (float checkpoint) scored with the same protocol.")
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
@click.option("--input-lens", default="128,512,2048", show_default=True, help="Prefill prompt lengths.")
@click.option("--batch", "batches", default="1,4,16", show_default=True, help="Decode batch sizes.")
@click.option("--output-tokens", default="128", show_default=True, help="Decoded tokens per decode trial.")
@click.option("--trials", default="5", show_default=True)
@click.option("--warmup", default="2", show_default=True)
@click.option("--threads", help="CPU threads for torch / llama.cpp (default: the library's).")
@click.option("--no-speed", is_flag=True, help="Skip the speed measurement.")
@click.option("--tensor-parallel", default="1", show_default=True, help="vLLM tensor-parallel size.")
@click.option("--trust-remote-code", is_flag=True, help="Run the model repository's own code (off by default).")
@click.option("--json", "as_json", is_flag=True, help="Print profile.json to stdout instead of tables.")
@click.option("--out", type=click.Path(file_okay=False), help="Write profile.json and profile.md here.")
@click.option("--plot", is_flag=True, help="With --out: also write PNG plots.")
@click.option("--force", is_flag=True, help="Overwrite existing files in --out.")
def profile(model, baseline, device, backend, dtype, evals, text, ppl_tokens, ppl_window, ppl_stride, bos, limit,
            input_lens, batches, output_tokens, trials, warmup, threads, no_speed, tensor_parallel, trust_remote_code,
            as_json, out, plot, force):
    """What did it cost: accuracy and speed of MODEL against BASE and against `qfit plan`'s prediction."""
    from qfit.errors import QfitError
    from qfit.profile.backends import backend_name, require
    from qfit.profile.run import ProfileOptions, parse_evals

    if plot and not out:
        raise QfitError("--plot writes PNG files: pass --out DIR too")
    require(backend_name(backend))  # a missing engine fails before anything is loaded
    opts = ProfileOptions(
        model=model, baseline=baseline, device=device, backend=backend_name(backend), dtype=dtype,
        evals=parse_evals(evals or ("ppl,kl,piqa,mmlu" if baseline else "ppl,piqa,mmlu"), baseline is not None), text=text,
        ppl_tokens=parse_tokens(ppl_tokens, "--ppl-tokens"), ppl_window=parse_tokens(ppl_window, "--ppl-window"),
        ppl_stride=parse_tokens(ppl_stride, "--ppl-stride") if ppl_stride is not None else None, bos=bos,
        limit=parse_positive_int(limit, "--limit"), input_lens=parse_int_list(input_lens, "--input-lens", 1 << 20),
        batches=parse_int_list(batches, "--batch", 4096), output_tokens=parse_positive_int(output_tokens, "--output-tokens"),
        trials=parse_positive_int(trials, "--trials", 1000), warmup=int(warmup) if str(warmup) == "0"
        else parse_positive_int(warmup, "--warmup", 1000), threads=parse_positive_int(threads, "--threads", 1024)
        if threads is not None else None, speed=not no_speed, tensor_parallel=parse_positive_int(tensor_parallel, "--tensor-parallel", 64),
        trust_remote_code=trust_remote_code)
    if opts.speed and opts.output_tokens < 2:
        raise QfitError("--output-tokens must be at least 2 (TPOT needs a second token)")
    if opts.baseline is None and not opts.evals and not opts.speed:
        raise QfitError("nothing to do: --eval none and --no-speed")
    _check_paths(opts, out, force, plot)
    from qfit.profile.report import render_rich, validate, write_outputs
    from qfit.profile.run import run_profile

    result = run_profile(opts, _progress_factory(not as_json and sys.stderr.isatty()))
    validate(result)
    if out:
        for p in write_outputs(result, Path(out), force, plot):
            click.echo(f"wrote {p}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        from rich.console import Console
        render_rich(result, Console() if sys.stdout.isatty() else Console(width=160))


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
        names = ["profile.json", "profile.md"] + (["retained_accuracy.png", "decode_vs_batch.png"] if plot else [])
        for name in names:
            refuse_existing(folder / name)
