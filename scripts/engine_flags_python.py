"""Argument definitions of Python engines read with `ast`, nothing imported: vLLM (`vllm serve`), SGLang
(`sglang serve` / `python -m sglang.launch_server`) and llama-cpp-python's server. Each reader takes an archive
(`.text(member)`, `.names`) and returns {"options": {spelling: definition}, ...}; a definition holds every spelling
(`flags`), a normalised `type` (int, float, str, bool = a switch, list, json), `default`, `choices` (with
`choices_enforced`: false where argparse also takes any string and the engine validates later), the help's first
sentence and `at`, the file:line it was read from (`call <- field` where a flag's kwargs come from a config field)."""

from __future__ import annotations

import ast
import re

from engine_flags_cpp import kv_type_numbers

SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.S)


def text_of(node, consts: dict) -> str:
    """The text a help expression evaluates to: literals, `+`, implicit concatenation, names of string constants."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return text_of(node.left, consts) + text_of(node.right, consts)
    if isinstance(node, ast.JoinedStr):
        return "".join(text_of(v, consts) if isinstance(v, ast.Constant) else "{...}" for v in node.values)
    if isinstance(node, ast.Name) and isinstance(consts.get(node.id), str):
        return consts[node.id]
    return ""


def value_of(node, consts: dict):
    """A default as data: literals as themselves, pydantic/dataclass Field(default=...), known constants, else the
    expression's source text (e.g. `max(multiprocessing.cpu_count() // 2, 1)`: computed at run time)."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("Field", "field"):
        kw = {k.arg: k.value for k in node.keywords}
        return value_of(kw["default"], consts) if "default" in kw else "<factory>" if "default_factory" in kw else None
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def module_consts(trees: dict, where: dict | None = None) -> tuple[dict, dict]:
    """Module-level `NAME = literal` constants and `NAME = Literal[...]` aliases across the given modules (`where`,
    if given, collects NAME -> 'path:line')."""
    consts, literals = {}, {}
    for path, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                name, value = node.target.id, node.value
            else:
                continue
            if where is not None:
                where.setdefault(name, f"{path}:{node.lineno}")
            if isinstance(value, ast.Subscript) and ast.unparse(value.value) == "Literal":
                literals[name] = [e.value for e in ast.walk(value.slice) if isinstance(e, ast.Constant)]
            elif isinstance(value, ast.Constant) or isinstance(value, (ast.List, ast.Tuple)):
                try:
                    consts[name] = ast.literal_eval(value)
                except ValueError:
                    pass
    return consts, literals


def kind(annotation: str, literals: dict) -> dict:
    """Normalised type of an annotation, with Literal choices (enforced only when no plain `str` is accepted)."""
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", annotation))
    out = {"type": "bool" if "bool" in names else "list" if names & {"list", "List"} else
           "json" if names & {"dict", "Dict"} else "int" if "int" in names else "float" if "float" in names else "str"}
    inline = re.search(r"Literal\[([^\]]*)\]", annotation)
    choices = [c for n in names for c in literals.get(n, [])] or (ast.literal_eval(f"[{inline.group(1)}]")
                                                                    if inline else [])
    if choices and out["type"] != "bool":
        out["choices"] = choices
        out["choices_enforced"] = "str" not in names
    return out


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    if re.match(r"[^.]*?: - ", text):          # "Data type ...: - "auto" will ...": the lead-in before the list
        return text.split(": - ")[0] + "."
    m = SENTENCE.match(text)
    return (m.group(1) if m else text)[:240]


def fields_of(tree: ast.Module, path: str) -> dict:
    """class name -> {field: (annotation node, value node, docstring, 'path:line')} for classes in one module."""
    out = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body, fields = cls.body, {}
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                nxt = body[i + 1] if i + 1 < len(body) else None
                doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else ""
                fields[node.target.id] = (node.annotation, node.value, doc, f"{path}:{node.lineno}")
        out[cls.name] = {"fields": fields, "bases": [ast.unparse(b) for b in cls.bases]}
    return out


def option_call(call: ast.Call) -> tuple[list[str], dict, ast.AST | None]:
    """`add_argument(*names, **kwargs)`: the option strings, its explicit keywords, and a `**spread` if any."""
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
    explicit, spread = {}, None
    for k in call.keywords:
        if k.arg is None:
            spread = k.value
        else:
            explicit[k.arg] = k.value
    return names, explicit, spread


def explicit_option(names, explicit: dict, consts: dict, at: str) -> dict:
    action = value_of(explicit.get("action"), consts) or ""
    typ = ast.unparse(explicit["type"]) if "type" in explicit else "str"
    out = {"flags": names, "type": "bool" if "store_true" in str(action) or "Deprecated" in str(action)
           else typ if typ in ("int", "float") else "str", "default": value_of(explicit.get("default"), consts),
           "help": first_sentence(text_of(explicit.get("help"), consts)), "at": at}
    if "choices" in explicit:
        out["choices"], out["choices_enforced"] = value_of(explicit["choices"], consts), True
    return out


def vllm_options(arc) -> dict:
    """`vllm serve`: EngineArgs.add_cli_args (arg_utils.py) + make_arg_parser/FrontendArgs (cli_args.py); each
    `**X_kwargs["field"]` resolved to the config dataclass field (type, default, attribute docstring)."""
    argu, cli = "vllm/engine/arg_utils.py", "vllm/entrypoints/common/cli_args.py"
    paths = [p for p in arc.names if p.startswith("vllm/config/") and p.endswith(".py")]
    paths += [argu, cli, "vllm/model_executor/layers/quantization/__init__.py"]
    trees, where = {p: ast.parse(arc.text(p)) for p in paths}, {}
    consts, literals = module_consts(trees, where)
    classes = {k: v for p, t in trees.items() for k, v in fields_of(t, p).items()}
    opts = {}
    for path, fn_name in ((argu, "add_cli_args"), (cli, "make_arg_parser")):
        fn = next(n for n in ast.walk(trees[path]) if isinstance(n, ast.FunctionDef) and n.name == fn_name)
        kw_of = {n.targets[0].id: n.value.args[0].id for n in ast.walk(fn) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Call) and ast.unparse(n.value.func) == "get_kwargs"}
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(
                ".add_argument")):
            names, explicit, spread = option_call(call)
            if names:
                opt = vllm_option(names, explicit, spread, kw_of, classes, consts, literals, f"{path}:{call.lineno}")
                opts.update({n: opt for n in names})
    for name, (ann, value, doc, at) in classes["FrontendArgs"]["fields"].items():   # looped over in add_cli_args
        flag = "--" + name.replace("_", "-")
        opts[flag] = {"flags": [flag], **kind(ast.unparse(ann), literals), "default": value_of(value, consts),
                      "help": first_sentence(doc), "at": at}
    return {"options": opts, "kv_cache_dtypes": literals["CacheDType"],
            "quantization_methods": literals["QuantizationMethods"],
            "at": {"kv_cache_dtypes": f"CacheDType, {where['CacheDType']}",
                   "quantization_methods": f"QuantizationMethods, {where['QuantizationMethods']}"}}


def vllm_option(names, explicit, spread, kw_of, classes, consts, literals, at) -> dict:
    overrides = {}
    if isinstance(spread, ast.Dict):        # **{**X_kwargs["f"], "default": None, ...}
        overrides = {k.value: v for k, v in zip(spread.keys, spread.values) if k is not None}
        spread = next(v for k, v in zip(spread.keys, spread.values) if k is None)
    if not isinstance(spread, ast.Subscript):
        return explicit_option(names, explicit, consts, at)
    cls, field = kw_of[spread.value.id], spread.slice.value
    klass = classes[cls]
    while field not in klass["fields"]:
        klass = classes[klass["bases"][0]]
    ann, value, doc, field_at = klass["fields"][field]
    out = {"flags": names, **kind(ast.unparse(ann), literals), "default": value_of(value, consts),
           "help": first_sentence(text_of(overrides.get("help"), consts) or doc), "at": f"{at} <- {field_at}"}
    if "default" in overrides and value_of(overrides["default"], consts) != out["default"]:
        out["field_default"], out["default"] = out["default"], value_of(overrides["default"], consts)
    if out["type"] == "bool":   # BooleanOptionalAction, as FlexibleArgumentParser's EnableDisableAction shows it
        out["negation"] = ["--disable-" + f[9:] if f.startswith("--enable-") else "--no-" + f[2:]
                           for f in names if f.startswith("--")]
    return out


def sglang_options(arc) -> dict:
    """SGLang: ServerArgs.add_cli_args derives flags from `name: A[T, "help" | Arg(...)] = default` fields in
    sglang/srt/arg_groups/fields/*.py (arg_utils.add_cli_args_from_dataclass), plus a few add_argument calls."""
    paths = [p for p in arc.names if p.startswith("sglang/srt/arg_groups/") and p.endswith(".py")]
    paths.append("sglang/srt/server_args.py")
    trees, where = {p: ast.parse(arc.text(p)) for p in paths}, {}
    consts, literals = module_consts(trees, where)
    opts = {}
    for path in (p for p in paths if "/fields/" in p):
        for cls in fields_of(trees[path], path).values():
            for name, (ann, value, _, at) in cls["fields"].items():
                opt = sglang_option(name, ann, value, consts, literals, at)
                opts.update({n: opt for n in (opt["flags"] if opt else [])})
    fn = next(n for n in ast.walk(trees["sglang/srt/server_args.py"]) if isinstance(n, ast.FunctionDef)
              and n.name == "add_cli_args")
    for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and ast.unparse(n.func) == "parser.add_argument"):
        names, explicit, _ = option_call(call)
        opts.update({n: explicit_option(names, explicit, consts, f"sglang/srt/server_args.py:{call.lineno}")
                     for n in names})
    return {"options": opts, "kv_cache_dtypes": opts["--kv-cache-dtype"]["choices"],
            "quantization_methods": opts["--quantization"]["choices"],
            "at": {"kv_cache_dtypes": f"--kv-cache-dtype choices, {opts['--kv-cache-dtype']['at']}",
                   "quantization_methods": f"QUANTIZATION_CHOICES, {where['QUANTIZATION_CHOICES']}"}}


def sglang_option(name, ann, value, consts, literals, at) -> dict | None:
    if not (isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "A"):
        return None
    typ, meta = ann.slice.elts[0], ann.slice.elts[1]
    arg = {k.arg: k.value for k in meta.keywords} if isinstance(meta, ast.Call) else {"help": meta}
    if value_of(arg.get("no_cli"), consts):
        return None
    flags = [value_of(arg.get("cli_name"), consts) or "--" + name.replace("_", "-")]
    flags += value_of(arg.get("aliases"), consts) or []
    out = {"flags": flags, **kind(ast.unparse(typ), literals), "default": value_of(value, consts),
           "help": first_sentence(text_of(arg.get("help"), consts)), "at": at}
    if "choices" in arg:
        out["choices"], out["choices_enforced"] = value_of(arg["choices"], consts), True
    if "fallback" in arg:       # used when neither the user nor the resolution hooks set it
        out["fallback"] = value_of(arg["fallback"], consts)
    return out


def llama_cpp_python_options(arc) -> dict:
    """llama-cpp-python's server: pydantic fields of ModelSettings/ServerSettings, each `--<field_name>` (underscores
    kept) per llama_cpp/server/cli.py add_args_from_model; a bool takes a value (true/false)."""
    path = "llama_cpp/server/settings.py"
    consts, literals = module_consts({path: ast.parse(arc.text(path))})
    classes = fields_of(ast.parse(arc.text(path)), path)
    opts = {}
    for cls in ("ModelSettings", "ServerSettings"):
        for name, (ann, value, _, at) in classes[cls]["fields"].items():
            kw = {k.arg: k.value for k in value.keywords} if isinstance(value, ast.Call) else {}
            opts["--" + name] = {"flags": ["--" + name], **kind(ast.unparse(ann), literals),
                                 "default": value_of(value, consts), "help": first_sentence(
                                     text_of(kw.get("description"), consts)), "at": at}
    return {"options": opts, "kv_cache_dtypes": kv_type_numbers(arc),
            "at": {"kv_cache_dtypes": "kv_cache_types of vendor/llama.cpp/common/arg.cpp, numbered by enum ggml_type of "
                                      "vendor/llama.cpp/ggml/include/ggml.h"}}


