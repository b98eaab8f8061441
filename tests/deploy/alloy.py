"""A reader for the subset of Grafana Alloy's configuration syntax that deploy/alloy/config.alloy uses:
blocks (`name "label" { ... }`), attributes (`key = value`), strings, numbers, booleans, lists,
objects and references (`loki.process.x.receiver`). Alloy itself is not installable here; this
checks the file's structure, and raises on anything it cannot read (unbalanced braces included)."""

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)
    |(?P<punct>[{}\[\]()=,])""",
    re.VERBOSE | re.DOTALL,
)


class AlloySyntaxError(ValueError):
    """The file is not in the subset this reader understands."""


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. `loki.write.loki.receiver`."""

    name: str


@dataclass
class Block:
    """`name "label" { attributes and blocks }`."""

    name: str
    label: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def all(self, name: str) -> list["Block"]:
        return [block for block in self.blocks if block.name == name]

    def one(self, name: str) -> "Block":
        found = self.all(name)
        if len(found) != 1:
            raise AssertionError(f"{self.name}: expected one {name} block, found {len(found)}")
        return found[0]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise AlloySyntaxError(f"line {line}: unexpected {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            raise AlloySyntaxError(f"expected {value or 'a token'}, found {token[1] or 'end of file'!r}")
        self.pos += 1
        return token

    def body(self, block: Block, closing: str | None) -> Block:
        while self.peek()[1] != (closing or ""):
            kind, name = self.take()
            if kind != "name":
                raise AlloySyntaxError(f"expected an attribute or block name, found {name!r}")
            if self.peek()[1] == "=":
                self.take("=")
                if name in block.attributes:
                    raise AlloySyntaxError(f"{block.name}: attribute {name} set twice")
                block.attributes[name] = self.value()
                continue
            label = None
            if self.peek()[0] == "string":
                label = self.take()[1][1:-1]
            self.take("{")
            block.blocks.append(self.body(Block(name, label), "}"))
        if closing:
            self.take(closing)
        return block

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1]
        if kind == "number":
            return float(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, Ref(text))
        if text == "[":
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
                if self.peek()[1] != "]":
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            obj = {}
            while self.peek()[1] != "}":
                key_kind, key = self.take()
                obj[key[1:-1] if key_kind == "string" else key] = (self.take("="), self.value())[1]
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
            return obj
        raise AlloySyntaxError(f"unexpected {text!r} in a value")


def parse(text: str) -> Block:
    """The file as one root block whose `blocks` are its components."""
    return _Reader(text).body(Block("<root>"), None)


def references(value: Any) -> list[str]:
    """Every reference inside a value."""
    if isinstance(value, Ref):
        return [value.name]
    if isinstance(value, list):
        return [name for item in value for name in references(item)]
    if isinstance(value, dict):
        return [name for item in value.values() for name in references(item)]
    return []
