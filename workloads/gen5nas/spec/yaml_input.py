"""The one YAML reader of user files (manifests, arch files, spaces, profiles), bounded.

Safe YAML alone still lets a small file cost unbounded work: aliases nest (a 1.4 KB "billion
laughs" expands to 10^9 nodes for whatever walks the result), nesting recurses, and a file can
be any size. This reader refuses, with a SpecError naming the file, before that work starts:
more than MAX_BYTES, bytes that are not UTF-8, more than MAX_NODES nodes once aliases are
expanded (counted while composing, so the bomb is never built), nesting deeper than MAX_DEPTH,
and an alias that contains itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from gen5nas.errors import SpecError

# A manifest with an inline space is a few KB and a few hundred nodes; the bounds keep the
# worst accepted input (pure-Python parsing, ~0.1 ms a node) under a second or two.
MAX_BYTES = 256 * 1024
MAX_NODES = 10_000  # scalars + collections, an alias counted as what it stands for
MAX_DEPTH = 64


class YamlLimitError(yaml.YAMLError):
    """A document past one of this module's bounds."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts nodes (an alias counts as all the nodes it stands for) and depth
    while composing, so it stops as soon as a bound is passed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # over all the documents of the stream, aliases expanded
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, this document

    def compose_document(self) -> Node | None:
        self._expanded = {}
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._expanded:
                    raise YamlLimitError(
                        f"recursive alias *{event.anchor} at line {event.start_mark.line + 1}: "
                        f"a node cannot contain itself"
                    )
                self._count(self._expanded[id(target)], event.start_mark.line)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._count(1, mark.line)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(
                f"nesting deeper than {MAX_DEPTH} levels (line {mark.line + 1}); "
                f"a spec is a few levels deep"
            )
        before = self._nodes
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node is not None:
            self._expanded[id(node)] = self._nodes - before + 1
        return node

    def _count(self, nodes: int, line: int) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlLimitError(
                f"more than {MAX_NODES} nodes, aliases expanded (at line {line + 1}); a spec has "
                f"a few hundred, and aliases that nest multiply a document"
            )


def load_yaml_documents(text: str, source: str) -> list[Any]:
    """Every document in ``text``; a bad or over-limit one is a SpecError naming ``source``."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"{source}: {len(text)} characters, more than the {MAX_BYTES} allowed")
    loader = BoundedLoader(text)
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs
    except YamlLimitError as exc:
        raise SpecError(f"{source}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file of at most MAX_BYTES, read without reading past the limit."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise SpecError(f"{what} {path} is a directory; expected a YAML file") from None
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"{path}: larger than {MAX_BYTES} bytes; a {what} is a few KB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"save the {what} as UTF-8"
        ) from None


def read_yaml_documents(path: str | Path, what: str = "file") -> list[Any]:
    """Every YAML document in ``path``; a missing, unreadable, over-limit or invalid file is a
    SpecError naming it."""
    return load_yaml_documents(read_text(path, what), str(path))


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The one YAML document in ``path`` (None when empty); see :func:`read_yaml_documents`."""
    docs = read_yaml_documents(path, what)
    if len(docs) > 1:
        raise SpecError(f"{path}: holds {len(docs)} YAML documents; expected one {what}")
    return docs[0] if docs else None


def load_yaml_text(text: str, source: str) -> Any:
    """The one YAML document in ``text`` (e.g. a request's arch), with the same bounds."""
    docs = load_yaml_documents(text, source)
    if len(docs) > 1:
        raise SpecError(f"{source}: holds {len(docs)} YAML documents; expected one")
    return docs[0] if docs else None
