"""Rules file -> ``RuleSet``, or a ``ConfigError`` naming every problem with its place.

Every problem reads ``file:line:column: field.path: reason``, semantic ones included (an
unknown queue points at the ``queue:`` line that names it), so an admin can jump straight to
it. Shape and type errors are reported first; the cross-reference checks run once the
shapes are right (they need a well-formed file to look things up in).

Hot reload (``reload_rules``): an invalid file is refused as a whole and the rules in force
stay in force; calls already routed keep the ``RuleSet`` (and version) they started with.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from callcenter.routing import rules as rules_mod
from callcenter.routing.rules import RuleSet, lint
from callcenter.yamlconf import ConfigError, Problem, YamlDocument, format_loc, load_yaml, parse_yaml, to_plain

_PATTERN_HINTS = {
    rules_mod._IDENT: "a name of letters, digits, '_', '.', '-' (starting with a letter or digit)",
}


def position(doc: YamlDocument, loc: Sequence[str | int]) -> tuple[int | None, int | None]:
    """(line, column), 1-based, of the deepest node of ``loc`` present in the file. Unlike
    ``YamlDocument.position`` it also finds keys YAML read as numbers (IVR digits ``1:``)."""
    node = doc.data
    best: tuple[int | None, int | None] = (1, 1) if isinstance(node, CommentedMap | CommentedSeq) else (None, None)
    for part in loc:
        if isinstance(node, CommentedMap):
            key = part if part in node else next((k for k in node if str(k) == str(part)), _MISSING)
            if key is _MISSING:
                break
            line, col = node.lc.key(key)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            key = part
            line, col = node.lc.item(part)
        else:
            break
        best = (line + 1, col + 1)
        node = node[key]
    return best


_MISSING = object()


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _keys_at(loc: Sequence[str | int]) -> list[str] | None:
    """The keys the model at ``loc`` accepts (for 'did you mean'), or None if unknown."""
    tp: Any = RuleSet
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next(
                (f for name, f in tp.model_fields.items() if (f.alias or name) == part),
                None,
            )
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (tuple, list):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return None


def _message(err: Any) -> tuple[tuple[str | int, ...], str]:
    """A pydantic error as (location, admin-facing message)."""
    loc = tuple(err["loc"])
    msg: str = err["msg"]
    kind = err["type"]
    if kind == "extra_forbidden":
        keys = _keys_at(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        if keys:
            msg += f"; allowed here: {', '.join(keys)}"
    elif kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern")
        if pattern in _PATTERN_HINTS:
            msg = f"{err.get('input')!r} is not {_PATTERN_HINTS[pattern]}"
        else:
            msg = f"{err.get('input')!r} has characters that are not allowed here (pattern {pattern})"
    elif kind == "missing":
        msg = f"required key {loc[-1]!r} is missing" if loc else "required key missing"
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
        msg = f"invalid key: {msg}"
    return loc, msg


def _problems(err: ValidationError, doc: YamlDocument) -> list[Problem]:
    out = []
    for e in err.errors(include_url=False):
        loc, msg = _message(e)
        line, col = position(doc, loc)
        out.append(Problem(doc.file, line, col, format_loc(loc), msg))
    out.sort(key=lambda p: (p.line or 0, p.column or 0))
    return out


def _raise(problems: list[Problem]) -> typing.NoReturn:
    raise ConfigError("invalid routing rules:\n  " + "\n  ".join(str(p) for p in problems), problems)


def _validate(doc: YamlDocument) -> RuleSet:
    if not isinstance(doc.data, CommentedMap):
        _raise([Problem(doc.file, 1, 1, "", "the rules file must be a mapping (queues:, rules:, fallback:, ...)")])
    try:
        return RuleSet.model_validate(to_plain(doc.data))
    except ValidationError as err:
        _raise(_problems(err, doc))


def warnings(rules: RuleSet, doc: YamlDocument) -> list[Problem]:
    out = []
    for loc, msg in lint(rules):
        line, col = position(doc, loc)
        out.append(Problem(doc.file, line, col, format_loc(loc), msg))
    return out


def parse_rules_checked(text: str, name: str) -> tuple[RuleSet, list[Problem]]:
    """Like ``parse_rules``, also returning warnings (valid, but probably not meant)."""
    doc = parse_yaml(text, name)
    rules = _validate(doc)
    return rules, warnings(rules, doc)


def load_rules_checked(path: str | Path) -> tuple[RuleSet, list[Problem]]:
    try:
        doc = load_yaml(path)
    except OSError as exc:  # a directory, no permission (file-not-found is handled by load_yaml)
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    rules = _validate(doc)
    return rules, warnings(rules, doc)


def parse_rules(text: str, name: str) -> RuleSet:
    """Validate rules given as text (``name`` is used in messages). Raises ConfigError."""
    return parse_rules_checked(text, name)[0]


def load_rules(path: str | Path) -> RuleSet:
    """Load and validate a rules file. Raises ConfigError listing every problem."""
    return load_rules_checked(path)[0]


def reload_rules(path: str | Path, current: RuleSet | None) -> tuple[RuleSet | None, list[Problem], bool]:
    """For SIGHUP: ``(rules in force, problems, changed)``. An invalid file changes nothing."""
    try:
        new = load_rules(path)
    except ConfigError as exc:
        problems = exc.problems or [Problem(str(path), None, None, "", str(exc))]
        return current, problems, False
    changed = current is None or new.version != current.version
    return (new if changed else current), [], changed
