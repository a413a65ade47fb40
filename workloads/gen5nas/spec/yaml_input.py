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
from yaml.nodes import MappingNode, Node, SequenceNode

from gen5nas.errors import SpecError

MAX_BYTES = 1 << 20  # a manifest with an inline space is a few KB
MAX_NODES = 100_000  # scalars + collections after alias expansion
MAX_DEPTH = 64


class YamlLimitError(yaml.YAMLError):
    """A document past one of this module's bounds."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts expanded nodes and depth while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it expands to, this document
        self._total = 0  # over all the documents of the stream

    def compose_document(self) -> Node | None:
        self._expanded = {}
        node = super().compose_document()
        if node is not None:
            self._total += self._expanded[id(node)]
            if self._total > MAX_NODES:
                raise YamlLimitError(f"more than {MAX_NODES} nodes in all the documents")
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._expanded:
                raise YamlLimitError(
                    f"recursive alias *{event.anchor} at line {event.start_mark.line + 1}: "
                    f"a node cannot contain itself"
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise YamlLimitError(
                f"nesting deeper than {MAX_DEPTH} levels (line {mark.line + 1}); "
                f"a spec is a few levels deep"
            )
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._expanded[id(node)] = self._size(node)
        return node

    def _size(self, node: Node) -> int:
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1
        for child in children:
            total += self._expanded[id(child)]
        if total > MAX_NODES:
            raise YamlLimitError(
                f"more than {MAX_NODES} nodes once aliases are expanded (line "
                f"{node.start_mark.line + 1}); aliases that nest multiply the document"
            )
        return total


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
