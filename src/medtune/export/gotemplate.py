"""A small renderer for the subset of Go's text/template that Ollama Modelfile TEMPLATEs use.

Ollama renders prompts with Go templates, not Jinja. No Go toolchain and no maintained Go-template
library exist on this machine's package index, so the export verifies each TEMPLATE it writes by
rendering it here and comparing with the run's Jinja template on the same conversations. The subset:
text, `{{- ... -}}` trimming, field access (`.Role`, `$.System`, `$var.Content`), `range [$i, $m :=] X`,
`if / else if / else / end`, `$x := EXPR`, parentheses, string/int literals and the functions eq, ne,
lt, le, gt, ge, and, or, not, len, slice, index. Values are what Ollama passes: `.System` (the system
messages joined), `.Messages` (consecutive same-role messages collated), `.Response`.
"""

from __future__ import annotations

import re
from typing import Any

from medtune.errors import MedtuneError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|\(|\)|:=|,|[^\s(),]+')
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def ollama_values(messages: list[dict[str, str]]) -> dict[str, Any]:
    """What Ollama hands a TEMPLATE for a chat: system messages joined, same-role neighbours collated."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    collated: list[dict[str, str]] = []
    for m in messages:
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    return {"System": "\n\n".join(system), "Messages": collated, "Response": "", "Prompt": ""}


def render(template: str, values: dict[str, Any]) -> str:
    """The text Go's text/template would produce for `template` with `values` as dot."""
    nodes, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _exec(nodes, values, {"$": values}, out)
    return "".join(out)


def _lex(template: str) -> list[tuple[str, str]]:
    """[(kind, payload)]: text pieces (already trimmed) and action bodies."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            items.append(("text", text))
        items.append(("action", m.group(2).strip()))
        pos, trim_next = m.end(), bool(m.group(3))
    text = template[pos:]
    if trim_next:
        text = text.lstrip()
    if text:
        items.append(("text", text))
    return items


def _parse(items: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int]:
    """Nodes until an action whose first word is in `stop` (returned index points at it)."""
    nodes: list[Any] = []
    while i < len(items):
        kind, body = items[i]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop:
            return nodes, i
        if word in ("if", "range"):
            node, i = _parse_block(items, i, word)
            nodes.append(node)
            continue
        if word in ("end", "else"):
            raise MedtuneError(f"Go template: {{{{ {body} }}}} without an opening if/range")
        toks = _TOKEN.findall(body)
        if len(toks) >= 2 and toks[0].startswith("$") and toks[1] == ":=":
            nodes.append(("set", toks[0], _expr(toks[2:])))
        else:
            nodes.append(("out", _expr(toks)))
        i += 1
    return nodes, i


def _parse_block(items: list[tuple[str, str]], i: int, word: str) -> tuple[Any, int]:
    head = _TOKEN.findall(items[i][1])[1:]
    branches: list[tuple[Any, list[Any]]] = []
    cond: Any = head
    while True:
        body, i = _parse(items, i + 1, ("else", "end"))
        if i >= len(items):
            raise MedtuneError(f"Go template: {{{{ {word} }}}} without {{{{ end }}}}")
        branches.append((cond, body))
        toks = _TOKEN.findall(items[i][1])
        if toks[0] == "end":
            break
        if len(toks) > 2 and toks[1] == "if" and word == "if":
            cond = toks[2:]
        elif len(toks) == 1:
            cond = None
        else:
            raise MedtuneError(f"Go template: unsupported {{{{ {items[i][1]} }}}}")
    i += 1
    if word == "range":
        variables: list[str] = []
        if ":=" in head:
            variables = [t for t in head[: head.index(":=")] if t != ","]
            head = head[head.index(":=") + 1:]
        els = branches[1][1] if len(branches) > 1 else []
        return ("range", variables, _expr(head), branches[0][1], els), i
    return ("if", [(None if c is None else _expr(c), b) for c, b in branches]), i


def _expr(toks: list[str]) -> Any:
    """A command: ('call', name, args) or one operand; parentheses nest."""
    args: list[Any] = []
    k = 0
    while k < len(toks):
        t = toks[k]
        if t == "(":
            depth, j = 1, k + 1
            while depth:
                if j >= len(toks):
                    raise MedtuneError("Go template: unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(toks[j], 0)
                j += 1
            group = _expr(toks[k + 1: j - 1])
            while j < len(toks) and toks[j].startswith(".") and len(toks[j]) > 1:  # (index .Messages 0).Role
                group, j = ("field", group, toks[j][1:].split(".")), j + 1
            args.append(group)
            k = j
            continue
        if t == "|":
            raise MedtuneError("Go template: pipelines (|) are not in the supported subset")
        args.append(("lit", _literal(t)) if t[0] in '"`' or t.lstrip("-").isdigit() else ("ref", t))
        k += 1
    if not args:
        raise MedtuneError("Go template: empty action")
    head = args[0]
    if head[0] == "ref" and head[1][0] not in ".$":
        return ("call", head[1], args[1:])
    if len(args) != 1:
        raise MedtuneError(f"Go template: cannot apply {toks}")
    return head


def _literal(t: str) -> Any:
    if t[0] == "`":
        return t[1:-1]
    if t[0] == '"':
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), t[1:-1])
    return int(t)


def _truth(v: Any) -> bool:
    return bool(v) if not isinstance(v, (int, float)) or isinstance(v, bool) else v != 0


def _eval(node: Any, dot: Any, env: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        name: str = node[1]
        if name == ".":
            return dot
        base, *fields = name.split(".") if name.startswith("$") else ["", *name[1:].split(".")]
        if base and base not in env:
            raise MedtuneError(f"Go template: undefined variable {base}")
        return _fields(env[base] if base else dot, fields, name)
    if kind == "field":
        return _fields(_eval(node[1], dot, env), node[2], "(...)")
    fn, args = node[1], [_eval(a, dot, env) for a in node[2]]
    return _call(fn, args)


def _fields(value: Any, fields: list[str], name: str) -> Any:
    for f in fields:
        if not isinstance(value, dict) or f not in value:
            raise MedtuneError(f"Go template: no field {f} in {name}")
        value = value[f]
    return value


def _call(fn: str, a: list[Any]) -> Any:
    if fn == "eq":
        return any(a[0] == b for b in a[1:])
    if fn in ("ne", "lt", "le", "gt", "ge"):
        x, y = a
        return {"ne": x != y, "lt": x < y, "le": x <= y, "gt": x > y, "ge": x >= y}[fn]
    if fn == "and":
        for v in a:
            if not _truth(v):
                return v
        return a[-1]
    if fn == "or":
        for v in a:
            if _truth(v):
                return v
        return a[-1]
    if fn == "not":
        return not _truth(a[0])
    if fn == "len":
        return len(a[0])
    if fn == "slice":
        return a[0][a[1]: a[2]] if len(a) > 2 else a[0][a[1]:]
    if fn == "index":
        return a[0][a[1]]
    raise MedtuneError(f"Go template: function {fn} is not in the supported subset")


def _exec(nodes: list[Any], dot: Any, env: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "out":
            v = _eval(node[1], dot, env)
            out.append("" if v is None else str(v))
        elif kind == "set":
            env[node[1]] = _eval(node[2], dot, env)
        elif kind == "if":
            for cond, body in node[1]:
                if cond is None or _truth(_eval(cond, dot, env)):
                    _exec(body, dot, dict(env), out)
                    break
        else:
            _, variables, expr, body, els = node
            seq = _eval(expr, dot, env)
            if not seq:
                _exec(els, dot, dict(env), out)
            for i, item in enumerate(seq):
                scope = dict(env)
                if len(variables) == 2:
                    scope[variables[0]], scope[variables[1]] = i, item
                elif len(variables) == 1:
                    scope[variables[0]] = item
                _exec(body, item, scope, out)
