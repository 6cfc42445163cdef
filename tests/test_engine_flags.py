"""Launch-flag tables (profiles/engines/launch/<engine>.yaml) are the engines' own definitions: well formed, every
concept qfit plans with either mapped to a flag or said to be absent, and, where the downloaded packages are at hand
($QFIT_ENGINE_SRC), exactly what scripts/read_engine_flags.py reads from them. Where an engine's parser imports
($QFIT_ENGINE_PYTHON_VLLM / _SGLANG, see scripts/check_engine_args.py), the flags and the multi-node commands are
checked with that parser itself."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qfit.engines import load_engines

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "profiles" / "engines" / "launch"
ENGINES = ("vllm", "sglang", "llama.cpp", "llama-cpp-python")
TYPES = {"int", "float", "str", "bool", "list", "json"}
# the concepts the planner's launch commands speak of (issue 13); each file maps or explains every one
CONCEPTS = {"model", "tensor_parallel", "pipeline_parallel", "data_parallel", "expert_parallel", "max_model_len",
            "memory_fraction", "kv_cache_dtype", "quantization", "max_sequences", "max_batched_tokens", "gpu_layers",
            "parallel_slots", "cpu_moe", "n_cpu_moe", "override_tensor", "rpc", "nnodes", "node_rank",
            "dist_init_addr", "executor_backend", "host", "port", "dtype", "trust_remote_code", "threads",
            "flash_attn", "tensor_split"}
CHECK = [sys.executable, str(ROOT / "scripts" / "check_engine_args.py")]


def table(engine: str) -> dict:
    return yaml.safe_load((LAUNCH / f"{engine}.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("engine", ENGINES)
def test_table_names_its_engine_version_and_archive(engine):
    doc = table(engine)
    assert doc["engine"] == engine and isinstance(doc["version"], str) and doc["version"]
    assert re.fullmatch(r"[0-9a-f]{64}", doc["source"]["sha256"])
    assert doc["source"]["package"].endswith((".whl", ".tar.gz")) and doc["source"]["files"]
    datetime.date.fromisoformat(doc["source"]["read_on"])
    assert all(q["file"] in doc["source"]["files"] and isinstance(q["line"], int) and q["text"]
               for q in doc["quotes"] + [q for r in doc["multi_node"].values() for q in r.get("quotes", [])])


@pytest.mark.parametrize("engine", ENGINES)
def test_every_concept_is_a_flag_or_explained(engine):
    doc = table(engine)
    flags, absent = set(doc["flags"]), set(doc["absent"])
    assert not flags & absent, f"both mapped and absent: {flags & absent}"
    assert CONCEPTS <= flags | absent, f"neither mapped nor explained: {CONCEPTS - flags - absent}"
    assert all(isinstance(why, str) and why for why in doc["absent"].values())


@pytest.mark.parametrize("engine", ENGINES)
def test_each_flag_is_an_option_with_a_definition(engine):
    for concept, entry in table(engine)["flags"].items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", concept)
        spellings = [entry["flag"], *entry.get("aliases", []), *entry.get("negation", [])]
        assert all(isinstance(s, str) and s.startswith("-") for s in spellings), (concept, spellings)
        assert len(set(spellings)) == len(spellings), concept
        assert entry["type"] in TYPES and isinstance(entry["help"], str), concept
        if "choices" in entry:
            assert entry["choices"] and isinstance(entry["choices_enforced"], bool), concept
            assert entry["default"] is None or entry["default"] in entry["choices"] or entry["type"] != "str", concept


@pytest.mark.parametrize("engine,must", [
    ("vllm", {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}), ("sglang", {"auto", "fp8_e4m3", "fp8_e5m2"}),
    ("llama.cpp", {"f16", "q8_0", "q4_0"}), ("llama-cpp-python", {"f16", "q8_0", "q4_0"}),
])
def test_kv_cache_dtypes_are_listed(engine, must):
    doc = table(engine)
    assert must <= set(doc["kv_cache_dtypes"])
    if "choices" in doc["flags"]["kv_cache_dtype"]:     # the flag's own choices are the same list
        assert doc["flags"]["kv_cache_dtype"]["choices"] == doc["kv_cache_dtypes"]


def test_llama_cpp_python_takes_ggml_type_numbers():
    numbers = table("llama-cpp-python")["kv_cache_dtypes"]
    assert numbers == {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "iq4_nl": 20, "q5_0": 6,
                       "q5_1": 7}       # enum ggml_type, vendor/llama.cpp/ggml/include/ggml.h
    assert set(numbers) == set(table("llama.cpp")["kv_cache_dtypes"])


@pytest.mark.parametrize("engine", ENGINES)
def test_multi_node_steps_use_the_tables_flags(engine):
    doc = table(engine)
    prefix = doc["command"].split(" MODEL")[0].split(" -")[0]
    known = {s for e in doc["flags"].values() for s in [e["flag"], *e.get("aliases", []), *e.get("negation", [])]}
    for name, recipe in doc["multi_node"].items():
        assert recipe["what"] and recipe["steps"] and (recipe.get("quotes") or recipe.get("documented_at")), name
        for step in recipe["steps"]:
            assert step["where"] and step["run"]
            if step["run"].startswith(prefix):
                used = re.findall(r"(?<!\S)(-{1,2}[A-Za-z][\w-]*)", step["run"])
                assert set(used) <= known, (name, set(used) - known)


def test_the_engine_profile_loader_ignores_the_launch_folder():
    names = load_engines(overlays=False).names
    assert "llama-cpp-python" not in names and set(names) >= {"vllm", "sglang", "llama.cpp"}


# ---- the script reads exactly what the files hold (needs the downloaded packages) ----

def _reader():
    sys.path.insert(0, str(ROOT / "scripts"))
    import read_engine_flags
    return read_engine_flags


@pytest.mark.parametrize("engine", ENGINES)
def test_tables_are_what_the_packages_say(engine):
    rf = _reader()
    cache = Path(os.environ.get("QFIT_ENGINE_SRC", "~/.cache/qfit/engine-src")).expanduser()
    package = rf.PACKAGES[engine]
    if rf.find_archive(package, rf.VERSIONS[package], cache) is None:
        pytest.skip(f"{package} {rf.VERSIONS[package]} not downloaded in {cache} (set QFIT_ENGINE_SRC)")
    target, text = rf.run(engine, cache, LAUNCH, rf.VERSIONS[package], datetime.date.today().isoformat())
    assert text == target.read_text(encoding="utf-8"), f"re-run scripts/read_engine_flags.py --engine {engine}"


# ---- the check script's own error paths (no engine needed) ----

def test_check_script_names_a_missing_interpreter():
    run = subprocess.run([*CHECK, "vllm", "--python", "/nonexistent/python", "--", "M"], capture_output=True,
                         text=True)
    assert run.returncode == 2 and run.stdout.strip().startswith("error: no Python interpreter at /nonexistent")


def test_check_script_says_when_the_engine_does_not_import():
    env = {k: v for k, v in os.environ.items() if not k.startswith("QFIT_ENGINE_PYTHON_")}
    run = subprocess.run([*CHECK, "sglang", "--", "--model-path", "M"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and run.stdout.startswith("error: sglang does not import in")
    assert len(run.stdout.strip().splitlines()) == 1


# ---- the engines' own parsers (scratch virtualenvs, see scripts/check_engine_args.py) ----

def _engine_python(engine: str) -> str:
    python = os.environ.get("QFIT_ENGINE_PYTHON_" + engine.upper())
    if not python:
        pytest.skip(f"QFIT_ENGINE_PYTHON_{engine.upper()} not set (scripts/check_engine_args.py says how to make one)")
    return python


def _check(engine: str, *args: str) -> tuple[int, str]:
    run = subprocess.run([*CHECK, engine, "--python", _engine_python(engine), *args], capture_output=True, text=True)
    return run.returncode, run.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_engines_parser_defines_each_flag_as_the_table_says(engine):
    doc = table(engine)
    rc, out = _check(engine, "--describe", "--", *[e["flag"] for e in doc["flags"].values()])
    seen = json.loads(out)
    assert rc == 0 and seen["version"] == doc["version"] and seen["missing"] == []
    for concept, entry in doc["flags"].items():
        got = seen["flags"][entry["flag"]]
        assert set(got["option_strings"]) == {entry["flag"], *entry.get("aliases", []), *entry.get("negation", [])}
        assert got["default"] == entry["default"], concept
        listed = got["choices"] or (got["metavar"] if isinstance(got["metavar"], list) else None)
        if listed:      # vLLM's --quantization lists nothing at parse time: its values are checked later
            assert set(listed) - {None} == set(entry["choices"]), concept
            assert bool(got["choices"]) == entry["choices_enforced"], concept


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_engines_parser_takes_the_multi_node_commands(engine):
    doc = table(engine)
    prefix = doc["command"].split(" MODEL")[0].split(" -")[0]
    values = {"gpus_per_node": "8", "nodes": "2", "node0_ip": "10.0.0.1", "port": "29500", "i": "1", "dp": "4",
              "dp_per_node": "2", "i_times_dp_per_node": "2", "gpus_per_node_times_nodes": "16"}
    for name, recipe in doc["multi_node"].items():
        for step in (s for s in recipe["steps"] if s["run"].startswith(prefix)):
            args = step["run"][len(prefix):].format(**values).split()
            rc, out = _check(engine, "--", *[("my-model" if a == "MODEL" else a) for a in args])
            assert rc == 0, (name, step["run"], out)
            parsed = json.loads(out)["args"]
            if "--node-rank" in args:
                assert parsed["node_rank"] == int(args[args.index("--node-rank") + 1]), (name, step["run"])
    rc, out = _check(engine, "--", *(["M"] if engine == "vllm" else ["--model-path", "M"]), "--tensor-parallel-sise",
                     "2")
    assert rc == 2 and out.startswith("error: ") and "--tensor-parallel-sise" in out


# ---- the readers on small hand-written sources (no download) ----

def _modules():
    _reader()
    import engine_flags_cpp
    import engine_flags_python
    return engine_flags_cpp, engine_flags_python


ARG_CPP = '''
    add_opt(common_arg(
        {"-c", "--ctx-size"}, "N",
        string_format("size of the prompt context (default: %d, 0 = loaded from model)", params.n_ctx),
        [](common_params & params, int value) { params.n_ctx = value; }
    ).set_env("LLAMA_ARG_CTX_SIZE"));
    add_opt(common_arg(
        {"-kvu", "--kv-unified"}, {"-no-kvu", "--no-kv-unified"},
        "use single unified KV buffer (default: enabled if number of slots is auto)",
        [](common_params & params, bool value) { params.kv_unified = value; }  // a comment, (unbalanced
    ).set_examples({LLAMA_EXAMPLE_SERVER, LLAMA_EXAMPLE_BENCH}));
    add_opt(common_arg({ "-fa", "--flash-attn" }, "[on|off|auto]",
        string_format("set Flash Attention use (default: '%s')", llama_flash_attn_type_name(params.flash_attn_type)),
        [](common_params & params, const std::string & value) { }));
    add_opt(common_arg({"-np", "--parallel"}, "N", "number of parallel sequences to decode",
        [](common_params & params, int value) { params.n_parallel = value; }));
    add_opt(common_arg({"-np", "--parallel"}, "N", string_format("number of server slots (default: %d)", params.n_parallel),
        [](common_params & params, int value) { params.n_parallel = value; }).set_examples({LLAMA_EXAMPLE_SERVER}));
    add_opt(common_arg({"--perplexity"}, "compute perplexity", [](common_params & params) { params.ppl = true; }
    ).set_examples({LLAMA_EXAMPLE_PERPLEXITY}));
'''
COMMON_H = "struct common_params {\n    int32_t n_ctx = 4096; // context\n    int32_t n_parallel = 1;\n" \
           "    enum llama_flash_attn_type flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;\n};\n"


def test_llama_cpp_options_are_read_from_the_argument_table():
    cpp, _ = _modules()
    src = cpp.strip_comments(ARG_CPP)
    defaults = {**cpp.member_defaults(COMMON_H), "n_parallel": "-1"}    # the server override
    opts = {}
    for m in re.finditer(r"add_opt\(\s*common_arg\(", src):
        close = cpp.balanced(src, m.end() - 1)
        opt = cpp.parse_option(src[m.end():close - 1], src[close:cpp.balanced(src, m.start() + 7)], defaults, [])
        opts.setdefault(opt["flags"][0], []).append(opt)
    assert [(o["type"], o["default"], o["server"]) for o in opts["-c"]] == [("int", 4096, 1)]
    assert opts["-c"][0]["env"] == "LLAMA_ARG_CTX_SIZE" and opts["-c"][0]["flags"] == ["-c", "--ctx-size"]
    kvu = opts["-kvu"][0]
    assert (kvu["type"], kvu["negation"], kvu["default"], kvu["server"]) == ("bool", ["-no-kvu", "--no-kv-unified"],
                                                                             None, 2)
    assert (opts["-fa"][0]["choices"], opts["-fa"][0]["default"]) == (["on", "off", "auto"], "auto")
    assert [(o["server"], o["default"]) for o in opts["-np"]] == [(1, -1), (2, -1)]   # the server's one ranks higher
    assert opts["--perplexity"][0]["server"] == 0 and opts["--perplexity"][0]["type"] == "bool"


@pytest.mark.parametrize("annotation,expected", [
    ("int", {"type": "int"}), ("int | None", {"type": "int"}), ("float", {"type": "float"}),
    ("bool | None", {"type": "bool"}), ("list[str] | None", {"type": "list"}), ("dict[str, Any]", {"type": "json"}),
    ('Literal["a", "b"]', {"type": "str", "choices": ["a", "b"], "choices_enforced": True}),
    ("Mode | str", {"type": "str", "choices": ["x", "y"], "choices_enforced": False}),   # vLLM: checked later
])
def test_python_annotations_map_to_flag_types(annotation, expected):
    _, py = _modules()
    assert py.kind(annotation, {"Mode": ["x", "y"]}) == expected


def test_sglang_fields_become_flags_as_add_cli_args_from_dataclass_names_them():
    _, py = _modules()
    import ast
    tree = ast.parse('class P:\n    tp_size: A[int, Arg(help="The TP size. More.", aliases=["--tensor-parallel-size"])] = 1\n'
                     '    hidden: A[int, Arg(no_cli=True)] = 0\n    ratio: A[Optional[float], Arg(help="R.", fallback=0.9)] = None\n')
    fields = py.fields_of(tree, "f.py")["P"]["fields"]
    got = {n: py.sglang_option(n, a, v, {}, {}, at) for n, (a, v, _, at) in fields.items()}
    assert got["tp_size"] == {"flags": ["--tp-size", "--tensor-parallel-size"], "type": "int", "default": 1,
                              "help": "The TP size.", "at": "f.py:2"}
    assert got["hidden"] is None and got["ratio"]["fallback"] == 0.9 and got["ratio"]["default"] is None


@pytest.mark.parametrize("value", ["on", "no", "--tp-size", 'say "hi"\nnext', "naïve", None, True, 0.92, -1, [], {}])
def test_rendered_yaml_reads_back_the_same(value):
    rf = _reader()
    record = {"a": {"b": value, "list": ["on", "x y", 1]}, "steps": [{"where": "n", "run": "x --y"}]}
    assert yaml.safe_load("\n".join(rf.emit(record, 0, (), {("a",): "why"}))) == record


def test_reviewed_parts_that_the_package_contradicts_are_refused(tmp_path):
    import zipfile
    rf = _reader()
    wheel = tmp_path / "eng-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("eng/serve.py", "def serve():\n    # Run headless workers\n    pass\n")
    arc = rf.Archive(wheel)
    assert rf.locate("eng", "quotes", [{"file": "eng/serve.py", "text": "#  Run  headless workers"}], arc)[0]["line"] == 2
    tp = {"flags": ["--tp", "-t"], "type": "int", "default": 1, "help": "", "at": "x:1"}
    read = {"options": {"--tp": tp, "-t": tp}}
    flags, _ = rf.concept_flags("eng", read, {"tensor_parallel": {"flag": "-t"}}, arc)
    assert flags["tensor_parallel"]["aliases"] == ["--tp"]
    recipe = {"r": {"steps": [{"where": "a", "run": "ray start --head"}, {"where": "b", "run": "eng serve MODEL --tp 2"}]}}
    assert rf.check_recipes("eng", recipe, "eng serve MODEL", read["options"], arc) == recipe
    for call, message in [
        (lambda: rf.concept_flags("eng", read, {"kv_cache_memory": {"flag": "--kv-cache-memory"}}, arc),
         "--kv-cache-memory .flags.kv_cache_memory.flag. is not an option in eng-1.0"),
        (lambda: rf.locate("eng", "quotes", [{"file": "eng/serve.py", "text": "gone"}], arc), "no longer in eng/serve.py"),
        (lambda: rf.check_recipes("eng", {"r": {"steps": [{"where": "a", "run": "eng serve MODEL --pp 2"}]}},
                                  "eng serve MODEL", read["options"], arc), "runs --pp, not defined"),
        (lambda: rf.check_recipes("eng", {"r": {"not_in_package": ["eng/serve.py"]}}, "eng serve MODEL", {}, arc),
         "is in eng-1.0-py3-none-any.whl now"),
    ]:
        with pytest.raises(SystemExit, match=message):
            call()
