"""Reads a Terraform root module and evaluates it far enough to write audit evidence.

python-hcl2 turns each file into dicts whose leaves are HCL expression *source*; this module
parses those expressions and evaluates the subset the repository uses (literals, templates,
var/local/each/module/resource references, for expressions, conditionals, a handful of
functions, dynamic blocks, for_each on resources and modules). Whatever only exists after
`apply` (ids, URLs, project numbers) stays an `Unknown` that prints as `${reference}`.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import yaml


class Unknown:
    """A value known only after apply; `text` is the expression that produces it."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Unknown({self.text})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class EvalError(Exception):
    pass


def unquote(label: str) -> str:
    if len(label) >= 2 and label[0] == '"' and label[-1] == '"':
        return label[1:-1]
    return label


# --------------------------------------------------------------------------- parsing

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")


class Parser:
    """Recursive descent over HCL expression source, producing a small AST of tuples."""

    def __init__(self, src: str):
        self.s = src
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self, tok: str) -> bool:
        self.ws()
        return self.s.startswith(tok, self.i)

    def peek_word(self, word: str) -> bool:
        self.ws()
        m = _IDENT.match(self.s, self.i)
        return bool(m) and m.group(0) == word

    def eat(self, tok: str) -> None:
        if not self.peek(tok):
            raise EvalError(f"expected {tok!r} at {self.i} in {self.s!r}")
        self.i += len(tok)

    def parse(self):
        node = self.expr()
        self.ws()
        if self.i != len(self.s):
            raise EvalError(f"trailing input at {self.i} in {self.s!r}")
        return node

    def expr(self):
        cond = self.binary(0)
        if self.peek("?"):
            self.eat("?")
            yes = self.expr()
            self.eat(":")
            no = self.expr()
            return ("cond", cond, yes, no)
        return cond

    _LEVELS = [["||"], ["&&"], ["==", "!="], ["<=", ">=", "<", ">"], ["+", "-"], ["*", "/", "%"]]

    def binary(self, level: int):
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            self.ws()
            op = next((o for o in self._LEVELS[level] if self.s.startswith(o, self.i)), None)
            if op is None:
                return left
            self.i += len(op)
            right = self.binary(level + 1)
            left = ("bin", op, left, right)

    def unary(self):
        if self.peek("!") and not self.peek("!="):
            self.eat("!")
            return ("not", self.unary())
        if self.peek("-"):
            self.eat("-")
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node):
        while True:
            if self.peek(".*"):
                self.eat(".*")
                node = ("splat", node)
            elif self.peek("[*]"):
                self.eat("[*]")
                node = ("splat", node)
            elif self.peek("."):
                save = self.i
                self.eat(".")
                self.ws()
                m = _IDENT.match(self.s, self.i) or _NUMBER.match(self.s, self.i)
                if not m:
                    self.i = save
                    return node
                self.i = m.end()
                node = ("attr", node, m.group(0))
            elif self.peek("["):
                self.eat("[")
                idx = self.expr()
                self.eat("]")
                node = ("index", node, idx)
            else:
                return node

    def primary(self):
        self.ws()
        c = self.s[self.i] if self.i < len(self.s) else ""
        if c == '"':
            return self.template()
        if c == "(":
            self.eat("(")
            e = self.expr()
            self.eat(")")
            return e
        if c == "[":
            return self.list_or_for()
        if c == "{":
            return self.object_or_for()
        if c.isdigit():
            m = _NUMBER.match(self.s, self.i)
            self.i = m.end()
            text = m.group(0)
            return ("lit", float(text) if ("." in text or "e" in text.lower()) else int(text))
        if self.s.startswith("<<", self.i):
            return self.heredoc()
        m = _IDENT.match(self.s, self.i)
        if not m:
            raise EvalError(f"unexpected {c!r} at {self.i} in {self.s!r}")
        name = m.group(0)
        self.i = m.end()
        if name == "true":
            return ("lit", True)
        if name == "false":
            return ("lit", False)
        if name == "null":
            return ("lit", None)
        if self.peek("("):
            self.eat("(")
            args = []
            while not self.peek(")"):
                args.append(self.expr())
                if self.peek("..."):
                    self.eat("...")
                    args[-1] = ("expand", args[-1])
                if self.peek(","):
                    self.eat(",")
            self.eat(")")
            return ("call", name, args)
        return ("var", name)

    def list_or_for(self):
        self.eat("[")
        if self.peek_word("for"):
            return self.for_expr("]", is_object=False)
        items = []
        while not self.peek("]"):
            items.append(self.expr())
            if self.peek(","):
                self.eat(",")
        self.eat("]")
        return ("list", items)

    def object_or_for(self):
        self.eat("{")
        if self.peek_word("for"):
            return self.for_expr("}", is_object=True)
        items = []
        while not self.peek("}"):
            self.ws()
            m = _IDENT.match(self.s, self.i)
            if m and not self.s.startswith("(", m.end()):
                self.i = m.end()
                key = ("lit", m.group(0))
            else:
                key = self.expr()
            self.ws()
            if self.peek("="):
                self.eat("=")
            else:
                self.eat(":")
            items.append((key, self.expr()))
            if self.peek(","):
                self.eat(",")
        self.eat("}")
        return ("object", items)

    def for_expr(self, close: str, is_object: bool):
        self.ws()
        self.i += 3  # "for"
        names = []
        while True:
            self.ws()
            m = _IDENT.match(self.s, self.i)
            names.append(m.group(0))
            self.i = m.end()
            if self.peek(","):
                self.eat(",")
                continue
            break
        self.ws()
        self.i += 2  # "in"
        coll = self.expr()
        self.eat(":")
        key = self.expr()
        val = None
        if is_object:
            self.eat("=>")
            val = self.expr()
            if self.peek("..."):
                self.eat("...")
        cond = None
        if self.peek_word("if"):
            self.ws()
            self.i += 2
            cond = self.expr()
        self.eat(close)
        return ("for", names, coll, key, val, cond, is_object)

    def template(self):
        self.eat('"')
        parts: list = []
        buf = []
        while True:
            if self.i >= len(self.s):
                raise EvalError(f"unterminated string in {self.s!r}")
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\":
                nxt = self.s[self.i + 1]
                buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}.get(nxt, "\\" + nxt))
                self.i += 2
                continue
            if self.s.startswith("$${", self.i):
                buf.append("${")
                self.i += 3
                continue
            if self.s.startswith("${", self.i):
                if buf:
                    parts.append(("lit", "".join(buf)))
                    buf = []
                self.i += 2
                parts.append(self.expr())
                self.eat("}")
                continue
            buf.append(c)
            self.i += 1
        if buf or not parts:
            parts.append(("lit", "".join(buf)))
        return ("template", parts) if len(parts) != 1 or parts[0][0] != "lit" else parts[0]

    def heredoc(self):
        m = re.compile(r"<<-?([A-Z_]+)\n(.*?)\n\s*\1", re.S).match(self.s, self.i)
        if not m:
            raise EvalError("bad heredoc")
        self.i = m.end()
        return ("lit", m.group(2))


def source_of(node) -> str:
    """Prints an AST back as HCL-like text (used for Unknown values)."""
    kind = node[0]
    if kind == "lit":
        return json.dumps(node[1])
    if kind == "var":
        return node[1]
    if kind == "attr":
        return f"{source_of(node[1])}.{node[2]}"
    if kind == "index":
        return f"{source_of(node[1])}[{source_of(node[2])}]"
    if kind == "call":
        return f"{node[1]}({', '.join(source_of(a) for a in node[2])})"
    if kind == "template":
        return '"' + "".join(p[1] if p[0] == "lit" else "${" + source_of(p) + "}" for p in node[1]) + '"'
    if kind == "bin":
        return f"{source_of(node[2])} {node[1]} {source_of(node[3])}"
    if kind == "expand":
        return f"{source_of(node[1])}..."
    return kind


# --------------------------------------------------------------------------- values

def to_expr_source(raw: Any) -> str | None:
    """python-hcl2 leaf -> HCL expression source, or None for non-string leaves."""
    if not isinstance(raw, str):
        return None
    if raw.startswith("${") and raw.endswith("}") and _single_interpolation(raw):
        return raw[2:-1]
    return raw


def _single_interpolation(raw: str) -> bool:
    depth = 0
    in_str = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i != len(raw) - 1:
                return False
        i += 1
    return True


def is_block(v: Any) -> bool:
    return isinstance(v, dict) and v.get("__is_block__") is True


def strip_meta(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("__")}


def render(value: Any) -> Any:
    """Evaluated value -> JSON-able value (Unknown as "${...}")."""
    if isinstance(value, (Unknown, _ModuleOutputs)):
        return fmt(value)
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v) for v in value]
    return value


# --------------------------------------------------------------------------- modules


@dataclass
class Resource:
    address: str
    mode: str  # "resource" or "data"
    type: str
    name: str
    key: Any
    module: str  # module path, "" for the root
    attrs: dict
    file: str


@dataclass
class ModuleSource:
    path: Path
    variables: dict = field(default_factory=dict)
    locals: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)  # (mode, type, name) -> (body, file)
    modules: dict = field(default_factory=dict)  # name -> body
    outputs: dict = field(default_factory=dict)


_SOURCES: dict[Path, ModuleSource] = {}


def load_files(directory: Path) -> dict[Path, dict]:
    return {f: hcl2.load(f.open()) for f in sorted(directory.glob("*.tf"))}


def load_module(directory: Path) -> ModuleSource:
    directory = directory.resolve()
    if directory in _SOURCES:
        return _SOURCES[directory]
    mod = ModuleSource(directory)
    for f, doc in load_files(directory).items():
        for block in doc.get("variable", []):
            for name, body in strip_meta(block).items():
                mod.variables[unquote(name)] = body
        for block in doc.get("locals", []):
            mod.locals.update(strip_meta(block))
        for mode in ("resource", "data"):
            for block in doc.get(mode, []):
                for rtype, named in strip_meta(block).items():
                    for rname, body in strip_meta(named).items():
                        mod.resources[(mode, unquote(rtype), unquote(rname))] = (body, f.name)
        for block in doc.get("module", []):
            for name, body in strip_meta(block).items():
                mod.modules[unquote(name)] = body
        for block in doc.get("output", []):
            for name, body in strip_meta(block).items():
                mod.outputs[unquote(name)] = body
    _SOURCES[directory] = mod
    return mod


def parse_tfvars(path: Path) -> dict:
    doc = hcl2.load(path.open())
    return {k: v for k, v in strip_meta(doc).items()}


class Instance:
    """One instance of a module (root or child) with its inputs."""

    def __init__(self, source: ModuleSource, inputs: dict, address: str, root_dir: Path):
        self.src = source
        self.inputs = inputs  # name -> evaluated value
        self.address = address
        self.root_dir = root_dir
        self._locals: dict = {}
        self._children: dict = {}
        self._resources: dict = {}

    # ---- evaluation of raw python-hcl2 values

    def value(self, raw: Any, scope: dict) -> Any:
        if is_block(raw):
            return self.block(raw, scope)
        if isinstance(raw, dict):
            return {unquote(k): self.value(v, scope) for k, v in strip_meta(raw).items()}
        if isinstance(raw, list):
            return [self.value(v, scope) for v in raw]
        src = to_expr_source(raw)
        if src is None:
            return raw
        try:
            node = Parser(src).parse()
        except (EvalError, AttributeError, IndexError):
            return Unknown(src)
        return self.eval(node, scope)

    def block(self, raw: dict, scope: dict) -> dict:
        out: dict = {}
        for k, v in strip_meta(raw).items():
            if k == "dynamic":
                for dyn in v:
                    for label, body in strip_meta(dyn).items():
                        label = unquote(label)
                        coll = self.value(body.get("for_each"), scope)
                        iterator = unquote(self.value(body["iterator"], scope)) if "iterator" in body else label
                        generated = out.setdefault(label, [])
                        for key, item in iterate(coll):
                            inner = dict(scope, **{iterator: {"key": key, "value": item}})
                            for content in body.get("content", []):
                                generated.append(self.block(content, inner))
                continue
            out[k] = self.value(v, scope)
        return out

    # ---- expression evaluation

    def eval(self, node, scope: dict) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "template":
            pieces = [self.eval(p, scope) for p in node[1]]
            if any(isinstance(p, Unknown) for p in pieces):
                return _UnknownTemplate(pieces)
            return "".join(fmt(p) for p in pieces)
        if kind == "list":
            return [self.eval(n, scope) for n in node[1]]
        if kind == "object":
            out = {}
            for k, v in node[1]:
                key = self.eval(k, scope)
                out[key if not isinstance(key, Unknown) else key.text] = self.eval(v, scope)
            return out
        if kind == "cond":
            c = self.eval(node[1], scope)
            if isinstance(c, Unknown):
                return Unknown(source_of(node))
            return self.eval(node[2] if c else node[3], scope)
        if kind == "not":
            v = self.eval(node[1], scope)
            return v if isinstance(v, Unknown) else (not v)
        if kind == "neg":
            v = self.eval(node[1], scope)
            return v if isinstance(v, Unknown) else -v
        if kind == "bin":
            return self.binop(node, scope)
        if kind == "for":
            return self.for_expr(node, scope)
        if kind == "call":
            return self.call(node, scope)
        if kind == "splat":
            base = self.eval(node[1], scope)
            return base if isinstance(base, (list, Unknown)) else [base]
        if kind in ("var", "attr", "index"):
            return self.reference(node, scope)
        raise EvalError(f"cannot evaluate {kind}")

    def binop(self, node, scope):
        _, op, ln, rn = node
        left = self.eval(ln, scope)
        if op == "&&" and left is False:
            return False
        if op == "||" and left is True:
            return True
        right = self.eval(rn, scope)
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return Unknown(source_of(node))
        return {
            "||": lambda: left or right,
            "&&": lambda: left and right,
            "==": lambda: left == right,
            "!=": lambda: left != right,
            "<": lambda: left < right,
            ">": lambda: left > right,
            "<=": lambda: left <= right,
            ">=": lambda: left >= right,
            "+": lambda: left + right,
            "-": lambda: left - right,
            "*": lambda: left * right,
            "/": lambda: left / right,
            "%": lambda: left % right,
        }[op]()

    def for_expr(self, node, scope):
        _, names, coll_n, key_n, val_n, cond_n, is_object = node
        coll = self.eval(coll_n, scope)
        if isinstance(coll, Unknown):
            return Unknown(source_of(coll_n))
        out: Any = {} if is_object else []
        for k, v in iterate(coll, as_list=isinstance(coll, list)):
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = k, v
            else:
                inner[names[0]] = v
            if cond_n is not None:
                c = self.eval(cond_n, inner)
                if isinstance(c, Unknown) or not c:
                    continue
            if is_object:
                key = self.eval(key_n, inner)
                out[key.text if isinstance(key, Unknown) else key] = self.eval(val_n, inner)
            else:
                out.append(self.eval(key_n, inner))
        return out

    def call(self, node, scope):
        _, name, arg_nodes = node
        if name == "try":
            for a in arg_nodes:
                try:
                    v = self.eval(a, scope)
                except (EvalError, KeyError, IndexError, TypeError):
                    continue
                if not isinstance(v, Unknown):
                    return v
            return Unknown(source_of(node))
        args = []
        for a in arg_nodes:
            if a[0] == "expand":  # f(list...): the list's elements are the arguments
                v = self.eval(a[1], scope)
                if isinstance(v, Unknown):
                    return Unknown(source_of(node))
                args.extend(v)
            else:
                args.append(self.eval(a, scope))
        if any(isinstance(a, Unknown) for a in args) and name not in ("merge", "concat", "toset", "tolist"):
            return Unknown(source_of(node))
        base = self.src.path
        fns = {
            "toset": lambda xs: sorted(set(xs), key=str) if not isinstance(xs, Unknown) else xs,
            "tolist": lambda xs: list(xs),
            "tonumber": lambda x: float(x) if "." in str(x) else int(x),
            "tostring": lambda x: fmt(x),
            "upper": lambda x: x.upper(),
            "lower": lambda x: x.lower(),
            "length": lambda x: len(x),
            "keys": lambda m: sorted(m.keys()),
            "values": lambda m: [m[k] for k in sorted(m.keys())],
            "contains": lambda xs, x: x in xs,
            "lookup": lambda m, k, *d: m.get(k, d[0] if d else None),
            "trimsuffix": lambda s, suf: s[: -len(suf)] if suf and s.endswith(suf) else s,
            "trimprefix": lambda s, pre: s[len(pre):] if s.startswith(pre) else s,
            "base64encode": lambda s: base64.b64encode(s.encode()).decode(),
            "join": lambda sep, xs: sep.join(fmt(x) for x in xs),
            "replace": lambda s, a, b: s.replace(a, b),
            "format": lambda f, *xs: f.replace("%s", "{}").format(*xs),
            "jsonencode": lambda v: json.dumps(render(v), separators=(",", ":")),
            "fileset": lambda d, pat: sorted(p.name for p in Path(d if Path(d).is_absolute() else base / d).glob(pat)),
            "file": lambda p: Path(p if Path(p).is_absolute() else base / p).read_text(),
            "yamldecode": lambda s: yaml.safe_load(s),
            "merge": _merge,
            "range": lambda *xs: list(range(*(int(x) for x in xs))),
            "max": lambda *xs: max(xs),
            "min": lambda *xs: min(xs),
            "flatten": _flatten,
            "concat": lambda *xs: [x for part in xs for x in (part if isinstance(part, list) else [part])],
        }
        if name not in fns:
            return Unknown(source_of(node))
        return fns[name](*args)

    def reference(self, node, scope):
        chain = []
        n = node
        while n[0] in ("attr", "index"):
            chain.append(n)
            n = n[1]
        if n[0] != "var":
            base = self.eval(n, scope)
            return self.traverse(base, list(reversed(chain)), scope, node)
        root = n[1]
        steps = list(reversed(chain))
        if root in scope:
            return self.traverse(scope[root], steps, scope, node)
        if root == "var":
            name = steps[0][2]
            if name not in self.inputs:
                return Unknown(source_of(node))
            return self.traverse(self.inputs[name], steps[1:], scope, node)
        if root == "local":
            name = steps[0][2]
            return self.traverse(self.local(name), steps[1:], scope, node)
        if root == "path":
            what = steps[0][2]
            return str(self.root_dir if what == "root" else self.src.path) if what in ("root", "module", "cwd") else Unknown(source_of(node))
        if root == "module":
            name = steps[0][2]
            child = self.child(name)
            rest = steps[1:]
            if rest and rest[0][0] == "index":
                key = self.eval(rest[0][2], scope)
                child = child.get(key) if isinstance(child, dict) else None
                rest = rest[1:]
                if child is None:
                    return Unknown(source_of(node))
            elif isinstance(child, dict) and (not rest or rest[0][0] != "attr"):
                return Unknown(source_of(node))
            if isinstance(child, dict):
                # module.x (for_each) used whole, e.g. `for name, m in module.x`
                if not rest:
                    return {k: _ModuleOutputs(c) for k, c in child.items()}
                return Unknown(source_of(node))
            if not rest:
                return _ModuleOutputs(child)
            return self.traverse(child.output(rest[0][2]), rest[1:], scope, node)
        if root == "data" and steps:
            return self.resource_ref("data", steps[0][2], steps[1:], scope, node)
        if root == "each":
            return Unknown(source_of(node))
        # resource reference TYPE.NAME...
        if steps and steps[0][0] == "attr":
            return self.resource_ref("resource", root, steps, scope, node)
        return Unknown(source_of(node))

    def traverse(self, value, steps, scope, node):
        for step in steps:
            if isinstance(value, Unknown):
                return Unknown(source_of(node))
            if isinstance(value, _ModuleOutputs) and step[0] == "attr":
                value = value.inst.output(step[2])
                continue
            key = step[2] if step[0] == "attr" else self.eval(step[2], scope)
            if isinstance(key, Unknown):
                return Unknown(source_of(node))
            try:
                value = value[key] if not isinstance(value, list) else value[int(key)]
            except (KeyError, IndexError, TypeError, ValueError):
                return Unknown(source_of(node))
        return value

    def local(self, name: str):
        if name not in self._locals:
            if name not in self.src.locals:
                raise EvalError(f"local.{name} is not defined in {self.src.path}")
            self._locals[name] = Unknown(f"local.{name}")  # cycle guard
            self._locals[name] = self.value(self.src.locals[name], {})
        return self._locals[name]

    def child(self, name: str):
        if name in self._children:
            return self._children[name]
        body = self.src.modules[name]
        src_dir = (self.src.path / unquote(body["source"])).resolve()
        child_src = load_module(src_dir)
        addr = f"{self.address}module.{name}" if not self.address else f"{self.address}.module.{name}"
        if "for_each" in body:
            coll = self.value(body["for_each"], {})
            result = {}
            for key, item in iterate(coll):
                scope = {"each": {"key": key, "value": item}}
                inputs = self.module_inputs(body, scope, child_src)
                result[key] = Instance(child_src, inputs, f'{addr}["{key}"]', self.root_dir)
            self._children[name] = result
        else:
            self._children[name] = Instance(child_src, self.module_inputs(body, {}, child_src), addr, self.root_dir)
        return self._children[name]

    def module_inputs(self, body, scope, child_src: ModuleSource) -> dict:
        inputs = {}
        for vname, vbody in child_src.variables.items():
            if vname in body:
                inputs[vname] = self.value(body[vname], scope)
            elif "default" in vbody:
                inputs[vname] = self.value(vbody["default"], {})
        return inputs

    def output(self, name: str):
        body = self.src.outputs.get(name)
        if body is None:
            raise EvalError(f"output {name} not in {self.src.path}")
        return self.value(body["value"], {})

    def resource_instances(self, mode: str, rtype: str, rname: str) -> dict:
        k = (mode, rtype, rname)
        if k in self._resources:
            return self._resources[k]
        body, _ = self.src.resources[k]
        self._resources[k] = {}  # cycle guard
        result = {}
        if "for_each" in body:
            coll = self.value(body["for_each"], {})
            for key, item in iterate(coll):
                scope = {"each": {"key": key, "value": item}}
                result[key] = self.attrs(rtype, body, scope)
        else:
            result[None] = self.attrs(rtype, body, {})
        self._resources[k] = result
        return result

    def attrs(self, rtype, body, scope) -> dict:
        raw = {k: v for k, v in strip_meta(body).items() if k not in ("for_each", "depends_on", "lifecycle", "provider", "count")}
        out = self.block(dict(raw, __is_block__=True), scope)
        project = out.get("project", self.inputs.get("project_id"))
        if rtype == "google_service_account" and isinstance(project, str):
            out.setdefault("email", f"{out['account_id']}@{project}.iam.gserviceaccount.com")
            out.setdefault("name", f"projects/{project}/serviceAccounts/{out['email']}")
        if rtype == "google_project_iam_custom_role" and isinstance(project, str):
            out.setdefault("name", f"projects/{project}/roles/{out['role_id']}")
        pattern = _ID_PATTERNS.get(rtype)
        if pattern and isinstance(project, str) and "id" not in out:
            fields = {k: v for k, v in out.items() if isinstance(v, str)}
            fields["project"] = project
            try:
                out["id"] = pattern.format(**fields)
            except KeyError:
                pass
        return out

    def resource_ref(self, mode, rtype, steps, scope, node):
        if not steps or steps[0][0] != "attr":
            return Unknown(source_of(node))
        rname = steps[0][2]
        if (mode, rtype, rname) not in self.src.resources:
            return Unknown(source_of(node))
        instances = self.resource_instances(mode, rtype, rname)
        rest = steps[1:]
        ref = f"{rtype}.{rname}" if mode == "resource" else f"data.{rtype}.{rname}"
        if None in instances:
            inst = instances[None]
        elif rest and rest[0][0] == "index":
            key = self.eval(rest[0][2], scope)
            if key not in instances:
                return Unknown(source_of(node))
            inst = instances[key]
            ref += f'["{key}"]'
            rest = rest[1:]
        else:
            return Unknown(source_of(node))
        if not rest or rest[0][0] != "attr":
            return Unknown(ref)
        attr = rest[0][2]
        if attr not in inst:
            # Known only after apply (ids, self links, numbers): name it by its resolved address.
            return Unknown(f"{ref}.{attr}")
        return self.traverse(inst[attr], rest[1:], scope, node)

    # ---- walking everything

    def all_resources(self) -> list[Resource]:
        out = []
        for (mode, rtype, rname), (_, fname) in sorted(self.src.resources.items()):
            for key, attrs in self.resource_instances(mode, rtype, rname).items():
                prefix = f"{self.address}." if self.address else ""
                kind = "data." if mode == "data" else ""
                suffix = "" if key is None else f'["{key}"]'
                out.append(Resource(f"{prefix}{kind}{rtype}.{rname}{suffix}", mode, rtype, rname, key, self.address, attrs, fname))
        for name in sorted(self.src.modules):
            child = self.child(name)
            children = child.values() if isinstance(child, dict) else [child]
            for c in sorted(children, key=lambda c: c.address):
                out.extend(c.all_resources())
        return out


# Resource ids that follow from the configuration alone (the provider's documented formats),
# so that the evidence names e.g. the exact key instead of "${google_kms_crypto_key.x.id}".
_ID_PATTERNS = {
    "google_compute_network": "projects/{project}/global/networks/{name}",
    "google_vpc_access_connector": "projects/{project}/locations/{region}/connectors/{name}",
    "google_kms_key_ring": "projects/{project}/locations/{location}/keyRings/{name}",
    "google_kms_crypto_key": "{key_ring}/cryptoKeys/{name}",
    "google_pubsub_topic": "projects/{project}/topics/{name}",
    "google_pubsub_subscription": "projects/{project}/subscriptions/{name}",
    "google_secret_manager_secret": "projects/{project}/secrets/{secret_id}",
}


class _ModuleOutputs:
    def __init__(self, inst: Instance):
        self.inst = inst

    def __getitem__(self, name):
        return self.inst.output(name)


class _UnknownTemplate(Unknown):
    """A string template with unknown parts; prints with the known parts filled in."""

    def __init__(self, pieces):
        super().__init__("".join(p.text if isinstance(p, Unknown) else fmt(p) for p in pieces))
        # "${a}-${b}" with a known: keep the known text outside the interpolation.
        self.render_text = "".join("${" + p.text + "}" if isinstance(p, Unknown) else fmt(p) for p in pieces)


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, _UnknownTemplate):
        return v.render_text
    if isinstance(v, Unknown):
        return "${" + v.text + "}"
    if isinstance(v, _ModuleOutputs):
        return "${" + v.inst.address + "}"
    return str(v)


def _merge(*maps):
    out: dict = {}
    for m in maps:
        if isinstance(m, dict):
            out.update(m)
    return out


def _flatten(xs):
    out = []
    for x in xs:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


def iterate(coll, as_list: bool = False):
    """(key, value) pairs of a map, or of a set/list (key = value for sets, index for lists)."""
    if isinstance(coll, dict):
        return sorted(coll.items(), key=lambda kv: str(kv[0]))
    if isinstance(coll, (list, tuple)):
        return list(enumerate(coll)) if as_list else [(v, v) for v in coll]
    return []


def evaluate_root(root_dir: Path, tfvars: Path | None = None) -> Instance:
    """Instantiates a root module with its terraform.tfvars (and variable defaults)."""
    _SOURCES.clear()
    src = load_module(root_dir)
    values = {}
    if tfvars is None and (root_dir / "terraform.tfvars").exists():
        tfvars = root_dir / "terraform.tfvars"
    raw_vars = parse_tfvars(tfvars) if tfvars else {}
    tmp = Instance(src, {}, "", root_dir.resolve())
    for name, body in src.variables.items():
        if name in raw_vars:
            values[name] = tmp.value(raw_vars[name], {})
        elif "default" in body:
            values[name] = tmp.value(body["default"], {})
        else:
            values[name] = Unknown(f"var.{name}")
    return Instance(src, values, "", root_dir.resolve())
