"""Python- and JavaScript-like source files with real indentation.

Function bodies are built statement by statement from random identifiers, so
files made from the same generator are not near duplicates of each other.
"""

from __future__ import annotations

import random

from tokenmill.sample import words as W
from tokenmill.sample.prose import Writer


def snake(rng: random.Random) -> str:
    return f"{rng.choice(W.CODE_VERBS)}_{rng.choice(W.CODE_NOUNS)}"


def camel(rng: random.Random) -> str:
    return rng.choice(W.CODE_VERBS) + rng.choice(W.CODE_NOUNS).title()


def _class_name(rng: random.Random) -> str:
    kind = rng.choice(["Store", "Client", "Builder", "Cache", "Reader", "Writer", "Manager", "Index"])
    return rng.choice(W.CODE_NOUNS).title() + kind


def _var(rng: random.Random) -> str:
    return rng.choice(W.CODE_NOUNS) + rng.choice(["", "s", "_map", "_list", "_count", "_id"])


def _py_statements(rng: random.Random, args: list[str], depth: int = 1) -> list[str]:
    ind = "    " * depth
    out: list[str] = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.random()
        v, a, attr = _var(rng), rng.choice(args), rng.choice(W.CODE_ATTRS)
        if kind < 0.3 or depth > 2:
            out.append(f"{ind}{v} = {snake(rng)}({a}, {attr}={rng.randint(0, 64)})")
        elif kind < 0.5:
            out.append(f"{ind}for {v} in {a}:")
            out.append(f"{ind}    if {v}.{attr} > {rng.randint(1, 99)}:")
            out += _py_statements(rng, args + [v], depth + 2)
        elif kind < 0.65:
            out.append(f"{ind}if not {a}:")
            out.append(f"{ind}    raise ValueError(\"{a} must not be empty\")")
        elif kind < 0.8:
            out.append(f"{ind}{v} = [x.{attr} for x in {a} if x.{rng.choice(W.CODE_ATTRS)}]")
        elif kind < 0.9:
            out.append(f"{ind}try:")
            out.append(f"{ind}    {v} = {a}[\"{attr}\"]")
            out.append(f"{ind}except KeyError:")
            out.append(f"{ind}    {v} = {rng.choice(['None', '0', '[]', '{}'])}")
        else:
            out.append(f"{ind}log.debug(\"{snake(rng)}: %s\", {a})")
    return out


def _py_function(rng: random.Random, method: bool = False) -> list[str]:
    args = sorted({_var(rng) for _ in range(rng.randint(1, 3))})
    sig = ", ".join((["self"] if method else []) + args)
    ind = "    " if method else ""
    w = Writer(rng)
    lines = [f"{ind}def {snake(rng)}({sig}):", f"{ind}    \"\"\"{w.sentence()}\"\"\""]
    body = _py_statements(rng, args, 1)
    lines += [ind + line for line in body]
    lines.append(f"{ind}    return {rng.choice(args)}")
    return lines


def python_module(rng: random.Random, min_lines: int = 0) -> str:
    w = Writer(rng)
    imports = sorted(rng.sample(W.PY_IMPORTS, rng.randint(2, 4)))
    lines = [f"\"\"\"{w.sentence()}\"\"\"", ""] + [f"import {m}" for m in imports]
    lines += ["", "log = logging.getLogger(__name__)" if "logging" in imports else f"{snake(rng).upper()} = {rng.randint(2, 512)}"]
    while True:
        lines += ["", ""]
        if rng.random() < 0.35:
            lines += [f"class {_class_name(rng)}:", f"    \"\"\"{w.sentence()}\"\"\"", ""]
            for i in range(rng.randint(1, 3)):
                lines += ([""] if i else []) + _py_function(rng, method=True)
        else:
            lines += _py_function(rng)
        if len(lines) >= max(min_lines, rng.randint(20, 60)):
            break
    return "\n".join(lines) + "\n"


def _js_statements(rng: random.Random, args: list[str], depth: int = 1) -> list[str]:
    ind = "  " * depth
    out: list[str] = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.random()
        v, a, attr = _var(rng), rng.choice(args), rng.choice(W.CODE_ATTRS)
        if kind < 0.35 or depth > 2:
            out.append(f"{ind}const {v}{depth} = {camel(rng)}({a}, {{ {attr}: {rng.randint(0, 64)} }});")
        elif kind < 0.6:
            out.append(f"{ind}for (const {v} of {a}) {{")
            out += _js_statements(rng, args + [v], depth + 1)
            out.append(f"{ind}}}")
        elif kind < 0.8:
            out.append(f"{ind}if ({a}.{attr} === undefined) {{")
            out.append(f"{ind}  throw new Error('{a}.{attr} is required');")
            out.append(f"{ind}}}")
        else:
            out.append(f"{ind}console.log('{camel(rng)}', {a}.{attr});")
    return out


def js_module(rng: random.Random, min_lines: int = 0) -> str:
    w = Writer(rng)
    lines = [f"// {w.sentence()}", "'use strict';", ""]
    for m in sorted(rng.sample(W.JS_IMPORTS, rng.randint(1, 3))):
        lines.append(f"const {m} = require('{m}');")
    names = []
    while True:
        name = camel(rng)
        names.append(name)
        args = sorted({_var(rng) for _ in range(rng.randint(1, 3))})
        lines += ["", f"/** {w.sentence()} */", f"function {name}({', '.join(args)}) {{"]
        lines += _js_statements(rng, args)
        lines += [f"  return {rng.choice(args)};", "}"]
        if len(lines) >= max(min_lines, rng.randint(20, 60)):
            break
    lines += ["", f"module.exports = {{ {', '.join(sorted(set(names)))} }};"]
    return "\n".join(lines) + "\n"
