"""A small reader/evaluator for Asterisk ``extensions.conf`` syntax, enough to *run* the shipped
``dialplans/asterisk/extensions_callcenter.conf`` in the simulator instead of a hand-written
copy of it (so the simulator follows the file when the file changes).

Supported: ``[context]`` (template options after it are ignored), ``exten => x,prio(label),App(args)``,
``same => n,...``, priorities ``1``/``n``/numbers, labels, ``;`` comments, patterns (``_X.``,
``_[a-z].``, ``N``/``Z``/``X``, ``.``, ``!``, character classes), ``${VAR}``, ``${FUNC(args)}``
and ``$[expression]`` substitution (nested, innermost first, as pbx_substitute_variables does).
Expressions: string/number operands, ``| & = != < > <= >= + - * / %``, parentheses, unary
``!``; comparisons are numeric when both sides are numbers, else string; results ``1``/``0``.
Not supported: ``include``, ``switch``, hints, ``${VAR:offset:len}``, the ``?:`` and ``=~`` operators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Context", "Dialplan", "Step", "evaluate", "parse_dialplan", "split_app", "substitute"]


@dataclass(frozen=True, slots=True)
class Step:
    app: str
    args: str
    label: str | None = None


@dataclass(slots=True)
class Context:
    name: str
    extensions: dict[str, dict[int, Step]] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def match(self, exten: str) -> str | None:
        """The extension key that ``exten`` runs: a literal first, then patterns in file order."""
        if exten in self.extensions and not exten.startswith("_"):
            return exten
        for rx, key in self.patterns:
            if rx.fullmatch(exten):
                return key
        return None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    body = pattern[1:]
    while i < len(body):
        c = body[i]
        if c == "X":
            out.append("[0-9]")
        elif c == "Z":
            out.append("[1-9]")
        elif c == "N":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            j = body.index("]", i)
            out.append("[" + body[i + 1 : j].replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


_LINE = re.compile(r"^(exten|same)\s*=>?\s*(.*)$", re.IGNORECASE)
_PRIO = re.compile(r"^(?P<prio>\d+|n|hint)(?:\((?P<label>[^)]*)\))?$")


def split_app(text: str) -> tuple[str, str]:
    """``App(args)`` -> (``App``, ``args``); a bare ``App`` has empty args."""
    text = text.strip()
    if "(" not in text:
        return text, ""
    name, _, rest = text.partition("(")
    return name.strip(), rest[: rest.rfind(")")] if ")" in rest else rest


def _strip_comment(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if c == ";":
            break
        out.append(c)
        i += 1
    return "".join(out).strip()


@dataclass(slots=True)
class Dialplan:
    contexts: dict[str, Context] = field(default_factory=dict)

    def find(self, context: str, exten: str) -> str | None:
        ctx = self.contexts.get(context)
        return ctx.match(exten) if ctx is not None else None

    def step(self, context: str, exten: str, priority: int) -> Step | None:
        ctx = self.contexts.get(context)
        key = ctx.match(exten) if ctx is not None else None
        if ctx is None or key is None:
            return None
        return ctx.extensions[key].get(priority)

    def has(self, context: str, exten: str) -> bool:
        return self.find(context, exten) is not None

    def label(self, context: str, exten: str, label: str) -> int | None:
        ctx = self.contexts.get(context)
        key = ctx.match(exten) if ctx is not None else None
        if ctx is None or key is None:
            return None
        for prio, step in ctx.extensions[key].items():
            if step.label == label:
                return prio
        return None

    def flat(self) -> list[tuple[str, str, int, str]]:
        """(context, extension, priority, application) for every step, in file order."""
        return [
            (c.name, exten, prio, step.app)
            for c in self.contexts.values()
            for exten, steps in c.extensions.items()
            for prio, step in sorted(steps.items())
        ]


def parse_dialplan(source: str | Path) -> Dialplan:
    """Parse extensions.conf text (or a file path)."""
    text = source.read_text() if isinstance(source, Path) else source
    plan = Dialplan()
    ctx: Context | None = None
    last_exten: str | None = None
    last_prio = 0
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("["):
            name = line[1 : line.index("]")]
            ctx = plan.contexts.setdefault(name, Context(name))
            last_exten, last_prio = None, 0
            continue
        m = _LINE.match(line)
        if m is None or ctx is None:
            continue  # include =>, switch =>, settings: not run by the simulator
        kind, rest = m.group(1).lower(), m.group(2)
        if kind == "exten":
            exten, _, rest = rest.partition(",")
            exten = exten.strip()
        else:
            if last_exten is None:
                continue
            exten = last_exten
        prio_text, _, app_text = rest.partition(",")
        pm = _PRIO.match(prio_text.strip())
        if pm is None or pm.group("prio") == "hint":
            continue
        prio = last_prio + 1 if pm.group("prio") == "n" else int(pm.group("prio"))
        if exten != last_exten and pm.group("prio") == "n":
            prio = 1 + max(ctx.extensions.get(exten, {0: Step("", "")}), default=0)
        app, args = split_app(app_text)
        steps = ctx.extensions.setdefault(exten, {})
        if exten.startswith("_") and not steps:
            ctx.patterns.append((_pattern_regex(exten), exten))
        steps[prio] = Step(app, args, pm.group("label"))
        last_exten, last_prio = exten, prio
    return plan


# -- substitution -------------------------------------------------------------------------------
Resolver = Callable[[str, "str | None"], str]


def _closing(text: str, start: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
    return -1


_FUNC = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\((?P<args>.*)\)$", re.DOTALL)


def substitute(text: str, resolve: Resolver) -> str:
    """Expand ``${...}`` and ``$[...]``; ``resolve(name, args)`` answers variables (args None)
    and functions other than IF/LEN/ISNULL/EXISTS."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("${", i):
            j = _closing(text, i + 1, "{", "}")
            if j < 0:
                out.append(text[i:])
                break
            inner = substitute(text[i + 2 : j], resolve)
            out.append(_lookup(inner, resolve))
            i = j + 1
        elif text.startswith("$[", i):
            j = _closing(text, i + 1, "[", "]")
            if j < 0:
                out.append(text[i:])
                break
            out.append(evaluate(substitute(text[i + 2 : j], resolve)))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _lookup(inner: str, resolve: Resolver) -> str:
    m = _FUNC.match(inner)
    if m is None:
        return resolve(inner, None)
    name, args = m.group("name").upper(), m.group("args")
    if name == "IF":
        cond, _, branches = args.partition("?")
        yes, _, no = branches.partition(":")
        return yes if _truthy(cond.strip()) else no
    if name == "LEN":
        return str(len(args))
    if name == "ISNULL":
        return "1" if args == "" else "0"
    if name == "EXISTS":
        return "0" if args == "" else "1"
    return resolve(m.group("name"), args)


def _truthy(value: str) -> bool:
    value = value.strip().strip('"')
    if value == "":
        return False
    try:
        return float(value) != 0
    except ValueError:
        return True


# -- $[ ] expressions ---------------------------------------------------------------------------
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op><=|>=|!=|==|[|&=<>+\-*/%!()])|(?P<word>[^\s|&=<>+\-*/%!()"]+))'
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bad expression near {expr[pos:]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("val", m.group("str")[1:-1]))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        elif m.group("word") is not None:
            out.append(("val", m.group("word")))
    return out


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i][1] if self.i < len(self.t) and self.t[self.i][0] == "op" else None

    def parse(self) -> str:
        value = self.or_()
        if self.i != len(self.t):
            raise ValueError("trailing tokens")
        return value

    def or_(self) -> str:
        left = self.and_()
        while self.peek() == "|":
            self.i += 1
            right = self.and_()
            left = left if _truthy(left) else (right if _truthy(right) else "0")
        return left

    def and_(self) -> str:
        left = self.cmp()
        while self.peek() == "&":
            self.i += 1
            right = self.cmp()
            left = left if _truthy(left) and _truthy(right) else "0"
        return left

    def cmp(self) -> str:
        left = self.add()
        while self.peek() in ("=", "==", "!=", "<", ">", "<=", ">="):
            op = self.t[self.i][1]
            self.i += 1
            right = self.add()
            a, b = _num(left), _num(right)
            pair: tuple[float, float] | tuple[str, str] = (a, b) if a is not None and b is not None else (left, right)
            x, y = pair
            result = {
                "=": x == y,
                "==": x == y,
                "!=": x != y,
                "<": x < y,  # type: ignore[operator]
                ">": x > y,  # type: ignore[operator]
                "<=": x <= y,  # type: ignore[operator]
                ">=": x >= y,  # type: ignore[operator]
            }[op]
            left = "1" if result else "0"
        return left

    def add(self) -> str:
        left = self.mul()
        while self.peek() in ("+", "-"):
            op = self.t[self.i][1]
            self.i += 1
            right = self.mul()
            a, b = _num(left), _num(right)
            if a is None or b is None:
                raise ValueError("non-numeric operand")
            left = _fmt(a + b if op == "+" else a - b)
        return left

    def mul(self) -> str:
        left = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.t[self.i][1]
            self.i += 1
            right = self.unary()
            a, b = _num(left), _num(right)
            if a is None or b is None or (op != "*" and b == 0):
                raise ValueError("bad arithmetic")
            left = _fmt(a * b if op == "*" else (int(a / b) if op == "/" else a % b))
        return left

    def unary(self) -> str:
        op = self.peek()
        if op == "!":
            self.i += 1
            return "0" if _truthy(self.unary()) else "1"
        if op == "-":
            self.i += 1
            v = _num(self.unary())
            if v is None:
                raise ValueError("non-numeric operand")
            return _fmt(-v)
        if op == "(":
            self.i += 1
            value = self.or_()
            if self.peek() != ")":
                raise ValueError("missing )")
            self.i += 1
            return value
        if self.i >= len(self.t) or self.t[self.i][0] != "val":
            raise ValueError("missing operand")
        value = self.t[self.i][1]
        self.i += 1
        return value


def evaluate(expr: str) -> str:
    """Evaluate a ``$[...]`` body (already substituted). A syntax error gives ``""`` (Asterisk
    logs a warning and substitutes nothing)."""
    try:
        return _Parser(_tokens(expr)).parse()
    except (ValueError, IndexError):
        return ""
