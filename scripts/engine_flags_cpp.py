"""llama.cpp's argument table read as text: vendor/llama.cpp/common/arg.cpp registers every option of every tool as
`add_opt(common_arg({spellings}, [{negations} | "VALUE"], help, [](common_params & params, <type> value) {...})
.set_examples({...}).set_env("LLAMA_ARG_..."))`; `add_opt` keeps an option for a tool when its examples name the
tool or LLAMA_EXAMPLE_COMMON (the default) and it is not excluded (common_params_parser_init). Defaults are the
`params.<field>` the help formats, looked up in common/common.h's member initialisers, after the per-tool overrides
at the top of common_params_parser_init. The vendored commit is the one llama-cpp-python's CHANGELOG.md names."""

from __future__ import annotations

import re

ARG_CPP, COMMON_H = "vendor/llama.cpp/common/arg.cpp", "vendor/llama.cpp/common/common.h"
GGML_H = "vendor/llama.cpp/ggml/include/ggml.h"
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
OPENERS, CLOSERS = "({[", ")}]"


COMMENT_OR_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|//[^\n]*|/\*.*?\*/', re.S)


def strip_comments(src: str) -> str:
    """Comments blanked (newlines kept, so offsets and line numbers stay), string and char literals untouched."""
    return COMMENT_OR_LITERAL.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else re.sub(r"[^\n]", " ", m.group(0)),
                                  src)


def balanced(src: str, start: int) -> int:
    """Index just past the bracket closing the one at `start` (strings skipped)."""
    depth, i = 0, start
    while True:
        c = src[i]
        if c == '"' or c == "'":
            j = i + 1
            while src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j
        elif c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def split_top(src: str) -> list[str]:
    """Top-level comma-separated items of an argument list."""
    items, depth, cur, i = [], 0, [], 0
    while i < len(src):
        c = src[i]
        if c in "\"'":
            j = balanced_string(src, i)
            cur.append(src[i:j])
            i = j
            continue
        depth += (c in OPENERS) - (c in CLOSERS)
        if c == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    return items + ["".join(cur).strip()]


def balanced_string(src: str, i: int) -> int:
    j = i + 1
    while src[j] != src[i]:
        j += 2 if src[j] == "\\" else 1
    return j + 1


def c_text(expr: str) -> str:
    """Concatenated C string literals of an expression; for `ex == X ? "a" : "b"` the branch a server gets."""
    if re.match(r"\s*ex\s*==\s*LLAMA_EXAMPLE_\w+\s*\?", expr) and "LLAMA_EXAMPLE_SERVER" not in expr.split("?")[0]:
        expr = expr.split(":", 1)[1] if ":" in expr else expr
    parts = STRING.findall(expr)
    return "".join(p.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
                   for p in parts)


def member_defaults(header: str) -> dict:
    """`name = value;` member initialisers of common.h (struct common_params first: its members win)."""
    out = {}
    start = header.find("struct common_params {")
    for chunk in (header[start:], header):
        for line in chunk.splitlines():
            m = re.match(r"\s*[\w:<>, ]+?\s(\w+)\s*=\s*([^;]+);", line)
            if m:
                out.setdefault(m.group(1), m.group(2).strip())
    return out


def c_value(text: str):
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*f?", text):
        return float(text.rstrip("f"))
    if text in ("true", "false"):
        return text == "true"
    if STRING.search(text):
        return STRING.search(text).group(1)
    if text.startswith("GGML_TYPE_"):
        return text[len("GGML_TYPE_"):].lower()
    m = re.match(r"LLAMA_\w+?_(?:TYPE|MODE)_(\w+)$", text)
    return m.group(1).lower() if m else text


def help_default(fmt_args: list[str], help_text: str, handler: str, defaults: dict):
    """The default, in this order: the first `params.<field>` the help formats (simple `params.x ? "a" : "b"` and
    `params.x == N ? "a" : "b"` evaluated); a literal "(default: X)" or "X (default)" in the help; the common.h
    default of the field
    the handler assigns, when the help does not speak of a default at all."""
    for arg in fmt_args:
        m = re.search(r"params\.([\w.]+)", arg)
        if not m or m.group(1).split(".")[-1] not in defaults:
            continue
        value = c_value(defaults[m.group(1).split(".")[-1]])
        tern = re.search(r"params\.[\w.]+\s*(==\s*(-?\d+))?\s*\?\s*\"([^\"]*)\"\s*:\s*\"([^\"]*)\"", arg)
        if tern:
            hit = value == int(tern.group(2)) if tern.group(1) else bool(value)
            return tern.group(3) if hit else tern.group(4)
        return value
    literal = re.search(r"\(default: ([\w.+-]+)\)", help_text) or re.search(r"(\w+) \(default\)", help_text)
    if literal:
        return c_value(literal.group(1))
    assigned = re.search(r"params\.(\w+)\s*=[^=]", handler)
    if "default" not in help_text and assigned and assigned.group(1) in defaults:
        return c_value(defaults[assigned.group(1)])
    return None


def parse_option(body: str, tail: str, defaults: dict, kv_types: list) -> dict:
    items = split_top(body)
    flags, lam, middle = STRING.findall(items[0]), items[-1], items[1:-1]
    negations = STRING.findall(middle.pop(0)) if middle and middle[0].startswith("{") else []
    help_expr = middle[-1] if middle else ""
    hint = c_text(middle[0]) if len(middle) > 1 else ""
    fmt = help_expr.startswith("string_format(")
    fmt_args = split_top(help_expr[help_expr.find("(") + 1:help_expr.rfind(")")]) if fmt else []
    sig = lam[lam.find("(") + 1:lam.find(")")]
    typ = ("bool" if negations or "," not in sig else "int" if re.search(r"\bint\b", sig) else
           "float" if "float" in sig else "str")
    help_text = c_text(fmt_args[0] if fmt else help_expr)
    out = {"flags": flags, "type": typ, "default": help_default(fmt_args[1:], help_text, lam, defaults),
           "help": help_text.strip().split("\n")[0][:240]}
    if negations:
        out["negation"] = negations
    choices = None
    if "get_all_kv_cache_types" in help_expr:
        choices = kv_types
    elif re.fullmatch(r"[\[{][\w|,+-]+[\]}]", hint):       # value hints such as [on|off|auto], {none,layer,row}
        choices = re.split(r"[|,]", hint.strip("[]{}"))
    if choices:
        out["choices"], out["choices_enforced"] = choices, True
    env = re.search(r'set_env\(\s*"(\w+)"', tail)
    if env:
        out["env"] = env.group(1)
    examples = re.search(r"set_examples\(\s*\{([^}]*)\}", tail)
    excludes = re.search(r"set_excludes\(\s*\{([^}]*)\}", tail)
    named = examples.group(1) if examples else ("LLAMA_EXAMPLE_COMMON" if "set_examples" not in tail else "")
    excluded = bool(excludes and "LLAMA_EXAMPLE_SERVER" in excludes.group(1))
    # 2: registered for llama-server by name; 1: for every tool (COMMON); 0: not in llama-server
    out["server"] = 0 if excluded else 2 if "LLAMA_EXAMPLE_SERVER" in named else int("LLAMA_EXAMPLE_COMMON" in named)
    return out


def server_overrides(src: str) -> dict:
    """`params.x = v;` assignments in common_params_parser_init's `ex == LLAMA_EXAMPLE_SERVER` branch."""
    m = re.search(r"ex == LLAMA_EXAMPLE_SERVER\)\s*\{(.*?)\}", src, re.S)
    return dict(re.findall(r"params\.(\w+)\s*=\s*([^;]+);", m.group(1))) if m else {}


def kv_cache_types(src: str) -> list[str]:
    """The `kv_cache_types` table of arg.cpp (what -ctk/-ctv accept), as ggml type names."""
    block = re.search(r"kv_cache_types\s*=\s*\{([^}]*)\}", src).group(1)
    return [t.strip()[len("GGML_TYPE_"):].lower() for t in block.split(",") if t.strip()]


def kv_type_numbers(arc) -> dict:
    """Those types' `enum ggml_type` numbers (vendor/llama.cpp/ggml/include/ggml.h): llama-cpp-python's type_k/type_v
    take the number."""
    numbers = dict(re.findall(r"GGML_TYPE_(\w+)\s*=\s*(\d+)", strip_comments(arc.text(GGML_H))))
    return {name: int(numbers[name.upper()]) for name in kv_cache_types(strip_comments(arc.text(ARG_CPP)))}


def llama_cpp_options(arc) -> dict:
    src = strip_comments(arc.text(ARG_CPP))
    defaults = {**member_defaults(strip_comments(arc.text(COMMON_H))), **server_overrides(src)}
    kv_types = kv_cache_types(src)
    opts = {}
    for m in re.finditer(r"add_opt\(\s*common_arg\(", src):
        open_at = m.end() - 1
        close = balanced(src, open_at)
        tail = src[close:balanced(src, m.start() + len("add_opt"))]
        opt = parse_option(src[open_at + 1:close - 1], tail, defaults, kv_types)
        opt["at"] = f"{ARG_CPP}:{src.count(chr(10), 0, m.start()) + 1}"
        for flag in opt["flags"] + opt.get("negation", []):
            if flag not in opts or opt["server"] > opts[flag]["server"]:   # the one llama-server gets wins
                opts[flag] = opt
    changelog = arc.text("CHANGELOG.md")
    version = re.search(r"## \[([\d.]+)\]", changelog).group(1)
    section = changelog.split(f"## [{version}]", 1)[1].split("\n## ", 1)[0]
    commit = re.search(r"llama\.cpp@([0-9a-f]+)", section).group(1)
    at = {"kv_cache_dtypes": f"kv_cache_types, {ARG_CPP}:{src.count(chr(10), 0, src.find('kv_cache_types =')) + 1}"}
    return {"options": opts, "kv_cache_dtypes": kv_types, "version": commit, "at": at,
            "files": [COMMON_H, "CHANGELOG.md"],
            "version_note": f"ggml-org/llama.cpp@{commit}, the commit llama-cpp-python {version}'s CHANGELOG.md "
                            "names for its vendor/llama.cpp (the sdist carries no git metadata)"}
