"""Flow files as YAML with line numbers: every problem found later can name its file and line.

A support manager edits these files by hand; a problem points at the line to fix. YAML 1.2 booleans
(yes/no/on/off stay words) and no implicit dates, so phrases and holidays mean what they say.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self):
        return f"{self.file}:{self.line}: {self.message}"


class FlowError(Exception):
    """One or more problems in flow files; str() lists them one per line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class FlowYamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: a phrase list may say yes, no, on or off and mean the words; no dates."""


# Dates stay text too: the few fields that hold one (holidays) parse it themselves, so an impossible
# date like 2026-13-45 is reported with its line instead of failing inside the YAML parser.
FlowYamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
FlowYamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class _Lines:
    """Line number of every node in the YAML document, by JSON path."""

    def __init__(self):
        self.by_path = {}

    def line(self, path) -> int:
        path = tuple(path)
        while path not in self.by_path and path:
            path = path[:-1]
        return self.by_path.get(path, 1)


def _build(node, path, lines, problems, file):
    lines.by_path[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                what = {"intents": "intent", "steps": "step"}.get(path[-1] if path else "", "key")
                problems.append(Problem(file, key_node.start_mark.line + 1, f"duplicate {what} '{key}'"))
                continue
            lines.by_path[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), lines, problems, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), lines, problems, file) for i, v in enumerate(node.value)]
    # Scalars keep YAML's own typing (ints, bools) via the safe constructor.
    return FlowYamlLoader("").construct_object(node, deep=True)


def parse_file(path: Path):
    """Parse YAML keeping line numbers; return (document, lines, problems)."""
    file = str(path)
    problems = []
    lines = _Lines()
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=FlowYamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return None, lines, [Problem(file, line, f"invalid YAML: {getattr(exc, 'problem', exc)}")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, lines, [Problem(file, 1, f"cannot read: {exc}")]
    if node is None:
        return None, lines, [Problem(file, 1, "empty flow file")]
    doc = _build(node, (), lines, problems, file)
    return doc, lines, problems
