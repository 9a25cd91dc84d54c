"""YAML files people edit by hand, with errors that point at the line.

Both the service settings and the routing rules are YAML files an admin edits. A validation
error must say *where*: ``config/callcenter.yaml:12:7: pbx[0].port: Input should be a valid
integer``. ruamel.yaml's round-trip loader keeps the line/column of every key and item, so a
pydantic error location (a tuple of keys and indexes) can be mapped back to the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError


class ConfigError(Exception):
    """A configuration file is invalid. ``str()`` is the complete, human-readable message."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None  # 1-based
    column: int | None  # 1-based
    path: str  # dotted field path, e.g. "pbx[0].port"
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


@dataclass(frozen=True, slots=True)
class YamlDocument:
    file: str
    data: Any  # CommentedMap/CommentedSeq/scalars; behaves like dict/list

    def position(self, loc: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Best (line, column), 1-based, for a pydantic ``loc``: the deepest node that exists."""
        node = self.data
        best: tuple[int | None, int | None] = (1, 1) if isinstance(node, CommentedMap | CommentedSeq) else (None, None)
        for key in loc:
            if isinstance(node, CommentedMap) and key in node:
                line, col = node.lc.key(key)
                best = (line + 1, col + 1)
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line, col = node.lc.item(key)
                best = (line + 1, col + 1)
                node = node[key]
            else:
                break
        return best


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(path: str | Path) -> YamlDocument:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_yaml(text, str(p))


def parse_yaml(text: str, name: str) -> YamlDocument:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = Problem(name, line, col, "", f"YAML syntax error: {exc.problem or exc.context}")
        raise ConfigError(str(problem), [problem]) from exc
    return YamlDocument(name, data if data is not None else CommentedMap())


def problems_from_validation(err: ValidationError, doc: YamlDocument | None, *, skip_loc: int = 0) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])[skip_loc:]
        line, col = doc.position(loc) if doc is not None else (None, None)
        problems.append(Problem(doc.file if doc else "<settings>", line, col, format_loc(loc), e["msg"]))
    return problems


def to_plain(data: Any) -> Any:
    """ruamel round-trip containers -> plain dict/list (pydantic validates plain data)."""
    if isinstance(data, dict):
        return {str(k): to_plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_plain(v) for v in data]
    return data
