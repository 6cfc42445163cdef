#!/usr/bin/env python3
"""Parse a launch argument list with the serving engine's own parser; print the result as one JSON line.

Usage: python scripts/check_engine_args.py ENGINE [--python PY] -- ARG ...
       python scripts/check_engine_args.py ENGINE [--python PY] --describe -- FLAG ...
ENGINE:
  vllm              `vllm serve`'s parser: FlexibleArgumentParser + make_arg_parser (vllm/entrypoints/common/
                    cli_args.py), ARGS as after `vllm serve` (MODEL first or --model).
  sglang            prepare_server_args (sglang/srt/server_args.py), what `sglang serve` and
                    `python -m sglang.launch_server` call.
  llama-cpp-python  `python -m llama_cpp.server`'s parser (add_args_from_model over Settings, then the pydantic
                    validation its __main__ runs). Needs the compiled package (pip builds llama.cpp): not run here.
  (llama.cpp's llama-server parses in C++; there is no parser to call without building it.)
Prints {"engine", "version", "args": {dest: value}} and exits 0, or `error: <the parser's message>` and exits 2.
--describe prints each flag's definition as the running parser holds it (option strings, dest, type, default,
choices), to compare with profiles/engines/launch/<engine>.yaml. Values JSON cannot hold are printed with repr().

The engine must import in the interpreter that runs this (give it with --python, or $QFIT_ENGINE_PYTHON_VLLM /
_SGLANG / _LLAMA_CPP_PYTHON). Nothing here touches the project's .venv; scratch virtualenvs, CPU only, as built
and checked on 2026-11-29 (Python 3.11; torch 2.13.0 CPU is ~0.75 GB of each; vLLM pins torch 2.14.0 and SGLang
2.14.1, 2.13.0 was enough to build and run the parsers):

  python3 -m venv V && V/bin/pip install torch==2.13.0
  # vLLM 0.33.0 (~2.2 GB): the wheel without its CUDA dependencies, plus what importing the parser needs
  V/bin/pip install --no-deps vllm==0.33.0 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 \\
    annotated-doc==0.0.7 annotated-types==0.8.0 anyio==4.16.0 apache-tvm-ffi==0.1.15.post2 attrs==26.1.0 \\
    cachetools==8.0.2 cbor2==6.3.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 click==8.5.1 \\
    cloudpickle==3.1.3 fastapi==0.136.3 frozenlist==1.8.0 h11==0.16.0 hf-xet==1.8.0 httpcore2==2.16.2 \\
    httpx2==2.16.2 huggingface_hub==2.4.0 idna==3.20 llguidance==1.9.1 markdown-it-py==4.3.0 mdurl==0.1.2 \\
    msgspec==0.23.0 multidict==7.2.1 numpy==2.4.6 openai==3.57.0 openai-harmony==0.0.8 packaging==26.4 \\
    partial-json-parser==0.2.1.1.post7 pillow==13.0.0 prometheus_client==0.26.0 propcache==0.5.4 psutil==7.2.2 \\
    py-cpuinfo==9.0.0 pybase64==1.5.1 pydantic==2.14.4 pydantic_core==2.50.5 Pygments==2.21.0 PyYAML==6.0.4 \\
    pyzmq==27.3.0 regex==2026.11.19 requests==2.34.2 rich==15.0.0 safetensors==0.8.0 shellingham==1.5.4 \\
    sniffio==1.3.1 starlette==1.10.0 tokenizers==0.23.3 tqdm==4.70.1 transformers==5.20.2 truststore==0.10.5 \\
    typer==0.29.2 typing-inspection==0.4.5 urllib3==2.8.0 uvloop==0.23.0 xgrammar==0.2.9 yarl==1.25.1
  # SGLang 0.5.23 (~2.3 GB, ~1 GB of it triton, which sglang/srt/utils/common.py imports at module level)
  V/bin/pip install --no-deps sglang==0.5.23 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 \\
    anyio==4.16.0 attrs==26.1.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 frozenlist==1.8.0 idna==3.20 \\
    ipython==9.18.1 msgspec==0.23.0 multidict==7.2.1 numpy==2.4.6 orjson==3.13.0 packaging==26.4 pillow==13.0.0 \\
    propcache==0.5.4 psutil==7.2.2 pybase64==1.5.1 pydantic==2.14.4 pydantic_core==2.50.5 Pygments==2.21.0 \\
    pyzmq==27.3.0 requests==2.34.2 starlette==1.10.0 tqdm==4.70.1 traitlets==5.16.1 triton==3.9.0 \\
    typing-inspection==0.4.5 urllib3==2.8.0 yarl==1.25.1

vLLM picks its platform at import; on a machine without a GPU this sets VLLM_TARGET_DEVICE=cpu (unless set), which
only decides the platform object the parser's defaults come from (DeviceConfig fails without one). Both parsers accept
unambiguous prefixes of long options (argparse allow_abbrev), and vLLM's --kv-cache-dtype and --quantization take
any string at parse time (checked later, when the engine builds its config): check values against the `choices` of
profiles/engines/launch/<engine>.yaml as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ENGINES = ("vllm", "sglang", "llama-cpp-python")


class ParseError(Exception):
    pass


def _raise(message: str):
    raise ParseError(message)


def vllm_parser():
    os.environ["VLLM_TARGET_DEVICE"] = os.environ.get("VLLM_TARGET_DEVICE") or "cpu"
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    from vllm.version import __version__

    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve")), __version__


def sglang_parser():
    from sglang.srt.server_args import ServerArgs
    from sglang.version import __version__

    parser = argparse.ArgumentParser(prog="sglang serve")      # as prepare_server_args builds it
    ServerArgs.add_cli_args(parser)
    return parser, __version__


def llama_cpp_python_parser():
    from llama_cpp import __version__
    from llama_cpp.server.cli import add_args_from_model
    from llama_cpp.server.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m llama_cpp.server")
    add_args_from_model(parser, Settings)
    return parser, __version__


def parse(engine: str, args: list[str]) -> dict:
    """The engine's own parse of `args`: the namespace, after the engine's own post-parse step where it has one."""
    parser, version = {"vllm": vllm_parser, "sglang": sglang_parser,
                       "llama-cpp-python": llama_cpp_python_parser}[engine]()
    parser.error = _raise                      # one line, no usage text, no exit
    if engine == "sglang":
        from sglang.srt.arg_groups.arg_utils import record_fields
        from sglang.srt.server_args import prepare_server_args
        parser.parse_args(args)                # the same parser prepare_server_args builds: errors come out here
        server_args = prepare_server_args(args)
        result = {f.name: getattr(server_args, f.name) for f in record_fields(type(server_args))}
    else:
        result = vars(parser.parse_args(args))
        if engine == "llama-cpp-python":       # __main__ then builds Settings: pydantic checks ranges (n_ctx >= 0 ...)
            from llama_cpp.server.cli import parse_model_from_args
            from llama_cpp.server.settings import Settings
            result = parse_model_from_args(Settings, argparse.Namespace(**result)).model_dump()
    return {"engine": engine, "version": version, "args": result}


def describe(engine: str, flags: list[str]) -> dict:
    parser, version = {"vllm": vllm_parser, "sglang": sglang_parser,
                       "llama-cpp-python": llama_cpp_python_parser}[engine]()
    out = {}
    for action in parser._actions:
        hit = [f for f in flags if f in action.option_strings]
        if hit:
            out[hit[0]] = {"option_strings": action.option_strings, "dest": action.dest,
                           "type": getattr(action.type, "__name__", repr(action.type)), "default": action.default,
                           "choices": list(action.choices) if action.choices else None, "nargs": action.nargs,
                           "metavar": action.metavar}
    return {"engine": engine, "version": version, "flags": out, "missing": [f for f in flags if f not in out]}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("engine", choices=ENGINES)
    ap.add_argument("--python", help="interpreter the engine imports in (default: $QFIT_ENGINE_PYTHON_<ENGINE>)")
    ap.add_argument("--describe", action="store_true", help="the arguments after -- are flags to describe")
    opts = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    python = opts.python or os.environ.get("QFIT_ENGINE_PYTHON_" + opts.engine.upper().replace("-", "_"))
    if python and not os.environ.get("QFIT_CHECK_ENGINE_ARGS_INNER"):      # re-run there once, same arguments
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            print(f"error: no Python interpreter at {python} (see this script's docstring to make the virtualenv)")
            return 2
        os.environ["QFIT_CHECK_ENGINE_ARGS_INNER"] = "1"
        os.execv(python, [python, os.path.abspath(__file__), *argv])
    try:
        result = describe(opts.engine, rest) if opts.describe else parse(opts.engine, rest)
    except ParseError as exc:
        print(f"error: {exc}")
        return 2
    except ImportError as exc:
        print(f"error: {opts.engine} does not import in {sys.executable}: {exc}")
        return 2
    except Exception as exc:        # the engine's own checks after parsing (pydantic ranges, config validation)
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return 2
    print(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
