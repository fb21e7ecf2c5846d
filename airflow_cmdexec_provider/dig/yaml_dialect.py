"""Digdag's YAML dialect (``YamlTagResolver``, ``StrictSafeConstructor``, ``!include``), with line numbers.

Plain ``yaml.safe_load`` reads Digdag files wrongly: YAML 1.1 makes ``10:00:00`` the number 36000,
``yes``/``on`` booleans and ``2016-01-01`` a date. Digdag resolves only ``true``/``false`` (and
``True``/``False``) as booleans, no integer or float with a colon, no number starting with ``0.``,
and no timestamps; it rejects duplicate keys; and ``!include : file.dig`` as a *key* merges the
mappings of that file (relative to the including file, which it may not leave) into the mapping
that holds the key.

Mappings load as :class:`DigMap`, a dict that remembers where each key was written, so that every
load error can name the file and the line.

Digdag's early ``.dig`` files (early 2016, ``DigConfigLoader``) were Hjson: ``+task: {`` with one
``key: value`` per line and no commas, which YAML cannot read. Some of Digdag's examples are still
in that form, so a file that YAML rejects and that looks like it is read as Hjson, with Hjson's
rules (an unquoted value runs to the end of its line; numbers, ``true``, ``false`` and ``null``
are typed) but for a `` # comment`` after a value, which is dropped as YAML drops it; duplicate keys
are refused, and each key's line is found in the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from airflow_cmdexec_provider.dig.errors import DigLoadError, Problem
from airflow_cmdexec_provider.expressions import js_string

INCLUDE_TAG = "!include"


class DigMap(dict[str, Any]):  # keys are strings: construct_dig_map turns others into JSON text
    """A YAML mapping of a ``.dig`` file: a dict plus where it (the key holding it) and each of its keys
    were written."""

    def __init__(self, file: Path, line: int) -> None:
        super().__init__()
        self.file = file
        self.line = line
        self.key_lines: dict[str, tuple[Path, int]] = {}

    def where(self, key: str | None = None) -> tuple[Path, int]:
        """The file and line of ``key`` (or of the mapping itself)."""
        if key is not None and key in self.key_lines:
            return self.key_lines[key]
        return self.file, self.line


def plain(value: Any) -> Any:
    """DigMaps (and lists of them) as plain dicts and lists, for Airflow."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Resolver(BaseResolver):
    """SnakeYAML's resolver as Digdag's ``YamlTagResolver`` changes it."""


# The patterns of Digdag's YamlTagResolver; resolvers are tried in this order (int before float).
_Resolver.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:[Tt]rue|[Ff]alse)$"), list("TtFf"))
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[1-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Constructor(SafeConstructor):
    """Mappings become DigMaps (strict: no duplicate keys), ``!include`` keys are merged in."""

    def __init__(self, file: Path, loader: FileLoader) -> None:
        super().__init__()
        self.file = file
        self.loader = loader

    def construct_dig_map(self, node: MappingNode) -> DigMap:
        self.flatten_mapping(node)
        mapping = DigMap(self.file, node.start_mark.line + 1)
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == INCLUDE_TAG:
                name = self.construct_object(value_node, deep=True)
                self._merge(mapping, self.loader.include(name, self.file, line))
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.loader.error(line, "a key", "keys must be plain strings, not lists or mappings")
            key = self.construct_object(key_node, deep=True)
            key = key if isinstance(key, str) else js_string(key)  # Digdag turns keys into JSON strings
            if key in mapping:
                raise self.loader.error(
                    line,
                    f"duplicate key {key!r}",
                    "Digdag rejects a key written twice in one mapping; keep one",
                )
            value = self.construct_object(value_node, deep=True)
            if isinstance(value, DigMap):
                value.line = line  # a task is found by the line of its key
            mapping[key] = value
            mapping.key_lines[key] = (self.file, line)
        return mapping

    def construct_undefined(self, node: Node) -> Any:
        line = node.start_mark.line + 1
        if node.tag == INCLUDE_TAG:
            raise self.loader.error(
                line,
                "!include as a value",
                "!include works only as a key: write '!include : other.dig' in the mapping",
            )
        raise self.loader.error(line, f"tag {node.tag}", "Digdag knows no such YAML tag")

    @staticmethod
    def _merge(mapping: DigMap, included: DigMap) -> None:
        """Digdag's include merge: nested mappings are merged key by key, anything else replaced."""
        for key, value in included.items():
            current = mapping.get(key)
            if isinstance(current, DigMap) and isinstance(value, DigMap):
                _Constructor._merge(current, value)
            else:
                mapping[key] = value
                mapping.key_lines[key] = included.where(key)


# types-PyYAML wants a function of a yaml.Loader; ours get the _Loader below, which is a _Constructor.
_Constructor.add_constructor("tag:yaml.org,2002:map", _Constructor.construct_dig_map)  # type: ignore[type-var]
_Constructor.add_constructor(None, _Constructor.construct_undefined)  # type: ignore[type-var]


class _Loader(Reader, Scanner, Parser, Composer, _Constructor, _Resolver):
    def __init__(self, stream: str, file: Path, loader: FileLoader) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Constructor.__init__(self, file, loader)
        _Resolver.__init__(self)


class FileLoader:
    """Reads ``.dig`` files (and the files they include) in Digdag's dialect; records what it read."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.read: list[Path] = []  # every file read, for the mtime cache
        self._including: list[Path] = []

    def load(self, path: Path | None = None) -> DigMap:
        path = path or self.file
        self.read.append(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DigLoadError(
                [Problem(path, 1, path.name, f"cannot read the file: {exc.strerror or exc}")]
            ) from exc
        self._including.append(path)
        try:
            data = _Loader(text, path, self).get_single_data()
        except yaml.MarkedYAMLError as exc:  # a syntax error, or a structure we cannot build
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            data = _early_brace_format(text, path)
            if data is None:
                raise DigLoadError(
                    [Problem(path, line, "YAML", f"invalid workflow definition: {exc.problem or exc}")]
                ) from exc
        finally:
            self._including.pop()
        if not isinstance(data, DigMap):
            raise DigLoadError(
                [
                    Problem(
                        path,
                        1,
                        path.name,
                        "a workflow file must be a YAML mapping of keys such as 'timezone:' and '+task:'",
                    )
                ]
            )
        return data

    def include(self, name: Any, parent: Path, line: int) -> DigMap:
        """Load ``name`` for an ``!include`` key of ``parent``: relative to its folder, never outside it."""
        if not isinstance(name, str) or not name:
            raise self.error(line, "!include", f"needs a file name, got {name!r}", parent)
        folder = parent.parent.resolve()
        target = (folder / name).resolve()
        if folder not in target.parents:
            raise self.error(
                line,
                f"!include : {name}",
                f"the file must be inside {folder} (Digdag refuses '..' and absolute paths)",
                parent,
            )
        if not target.is_file():
            raise self.error(line, f"!include : {name}", f"{target} does not exist", parent)
        if target in self._including:
            chain = " -> ".join(p.name for p in [*self._including, target])
            raise self.error(line, f"!include : {name}", f"the file includes itself ({chain})", parent)
        return self.load(target)

    def error(self, line: int, construct: str, message: str, file: Path | None = None) -> DigLoadError:
        return DigLoadError([Problem(file or self._including[-1], line, construct, message)])


_COMMENT = re.compile(r"\s+#")
_BRACE_LINE = re.compile(r"^\s*[^\s#{}\[\]][^:#]*:\s*\{\s*$", re.MULTILINE)  # "+task: {" alone on a line


def _early_brace_format(text: str, path: Path) -> DigMap | None:
    """The mapping of a file in Digdag's early Hjson form, or None if it is not one."""
    if not _BRACE_LINE.search(text):
        return None
    import hjson  # type: ignore[import-untyped]  # only for these old files (no type hints published)

    def mapping(pairs: list[tuple[str, Any]]) -> DigMap:
        built = DigMap(path, 1)
        for key, value in pairs:
            if key in built:
                raise DigLoadError(
                    [
                        Problem(
                            path,
                            1,
                            f"duplicate key {key!r}",
                            "Digdag rejects a key written twice in one mapping",
                        )
                    ]
                )
            if key.startswith(INCLUDE_TAG):
                raise DigLoadError(
                    [
                        Problem(
                            path,
                            1,
                            INCLUDE_TAG,
                            "!include is read in YAML files only; write this file as YAML",
                        )
                    ]
                )
            built[key] = value
        return built

    # Hjson reads "value   # note" as one string; these files mean a YAML-style comment (Digdag's
    # schedule_weekly example): a " #..." outside quotes is dropped, line by line (the lines stay).
    text = "\n".join(_without_comment(line) for line in text.splitlines())
    try:
        data = hjson.loads(text, object_pairs_hook=mapping)
    except hjson.HjsonDecodeError:
        return None
    if not isinstance(data, DigMap):
        return None
    _place(data, text.splitlines(), 0, path)
    return data


def _without_comment(line: str) -> str:
    """``line`` without a YAML-style comment: from the first whitespace + ``#`` outside quotes on."""
    for match in _COMMENT.finditer(line):
        before = line[: match.start()]
        if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            return before
    return line


def _place(mapping: DigMap, lines: list[str], cursor: int, path: Path) -> int:
    """Give each key the line it is written on: keys come in the order of the text, so each is
    looked for from where the one before it was found."""
    for key, value in mapping.items():
        written = re.compile(r'^\s*"?' + re.escape(key) + r'"?\s*:')
        found = next((i for i in range(cursor, len(lines)) if written.match(lines[i])), None)
        if found is not None:
            cursor = found
        mapping.key_lines[key] = (path, cursor + 1)
        children = [value] if isinstance(value, DigMap) else value if isinstance(value, list) else []
        for child in children:
            if isinstance(child, DigMap):
                child.line = cursor + 1
                cursor = _place(child, lines, cursor + 1, path) if child else cursor
    return cursor
