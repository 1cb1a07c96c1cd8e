"""The include expander: a command script gets only the helpers it uses, not whole files.

Redis runs a script's whole text on every call, so every helper an include defines is made
anew each time (a closure per ``local function``, a table per table literal), used or not.
``expand`` replaces each ``-- @include _x.lua`` line of a command script with the top-level
definitions of ``_x.lua`` that the script reaches: those its own text names, then those they
name, transitively, in the order the include files hold them (so each is still defined before
any later definition uses it, as in the whole file).

It relies on a layout of the include files, which ``blocks`` checks (``IncludeLayoutError``
for a line it cannot place, naming the file and line; tests/broker/test_lua_includes.py runs it
on every include):

* A top-level statement starts at column 0 and is one of: ``local function NAME(``, ``local
  NAME[, NAME...] = value`` (a constant, a table or ``nil``: the value may run no command, as a
  definition nobody uses is dropped), or ``NAME = value`` (assigning a name defined above: kept
  when that name is). Nothing else may start at column 0 but ``end``, a closing bracket, a
  comment or a blank line; the statement goes on over indented lines.
* Comment lines before a statement go with it (file headers with the first statement).

A name is used by a text if it appears there as a name, not a field (``x.name``, ``x:name``),
not in a string or comment. A local of the same name inside a function counts as a use (it
keeps one definition too many, never one too few).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Block", "IncludeLayoutError", "blocks", "expand", "names_used"]

INCLUDE = re.compile(r"^-- @include (?P<file>_[a-z_]+\.lua)[ \t]*$", re.MULTILINE)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FUNCTION = re.compile(rf"^local function ({_NAME})\(")
_LOCAL = re.compile(rf"^local ({_NAME}(?:, *{_NAME})*) *=")
_ASSIGN = re.compile(rf"^({_NAME}) = ")
_CLOSER = re.compile(r"^(end\b|[})\]])")
#: Lua tokens, enough to find names: long comments and strings, comments, quoted strings (with
#: escapes), numbers (so that 1e5 holds no name), names, '..' and '...', '.', ':', any other.
_TOKEN = re.compile(
    r"--\[(?P<c>=*)\[.*?\](?P=c)\]|--[^\n]*|\[(?P<s>=*)\[.*?\](?P=s)\]"
    r"|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|\d[\w.]*"
    rf"|(?P<name>{_NAME})|\.\.\.?|(?P<field>[.:])|\S",
    re.DOTALL,
)

_KEYWORDS = frozenset(
    ("and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
     "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while")
)  # fmt: skip


class IncludeLayoutError(ValueError):
    """An include file holds a top-level line the expander cannot place (see the module)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One top-level statement of an include file with the comment lines before it.

    ``defines``: the names a ``local`` statement defines; ``assigns``: the name a plain
    assignment sets (then ``defines`` is empty); ``uses``: every name its text uses."""

    text: str
    defines: tuple[str, ...]
    assigns: str | None
    uses: frozenset[str]


def names_used(code: str) -> frozenset[str]:
    """The names ``code`` uses (not fields, strings or comments; keywords included)."""
    out: set[str] = set()
    after_field = False
    # findall's tuples (one string a group, "" when it did not match) are several times cheaper
    # than a match object's group() calls: this runs over every include at a worker's start.
    for _comment, _string, name, field in _TOKEN.findall(code):
        if name and not after_field:
            out.add(name)
        after_field = field != ""
    return frozenset(out)


def blocks(filename: str, text: str) -> list[Block]:
    """The top-level statements of include file ``filename`` in order. Raises
    ``IncludeLayoutError`` naming the line for one outside the layout (see the module)."""
    # first line (its comments), statement line, defines, assigns
    starts: list[tuple[int, int, tuple[str, ...], str | None]] = []
    lines = text.splitlines(keepends=True)
    pending = 0  # comment and blank lines seen since the last code line
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "" or line.startswith("--"):
            pending += 1
            continue
        head = _start(filename, number, line)
        if head is not None:
            starts.append((number - pending if starts else 0, number, *head))
        elif not starts:
            raise IncludeLayoutError(f"{filename}:{number + 1}: code before any definition")
        pending = 0
    out = []
    for i, (first, start, defines, assigns) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(lines)
        body = "".join(lines[first:end])
        if defines and not _FUNCTION.match(lines[start]):
            _check_value(filename, start, body)
        out.append(Block(body, defines, assigns, names_used(body)))
    return out


def _start(filename: str, number: int, line: str) -> tuple[tuple[str, ...], str | None] | None:
    """What the statement starting at ``line`` defines or assigns; None for a line that goes
    on the statement above."""
    if line[0] in " \t" or _CLOSER.match(line):
        return None
    if found := _FUNCTION.match(line):
        return (found.group(1),), None
    if found := _LOCAL.match(line):
        return tuple(n.strip() for n in found.group(1).split(",")), None
    if found := _ASSIGN.match(line):
        return (), found.group(1)
    raise IncludeLayoutError(
        f"{filename}:{number + 1}: a top-level line must be 'local function NAME(', "
        f"'local NAME = ', 'NAME = ', 'end', a closing bracket or a comment: {line.strip()!r}"
    )


def _check_value(filename: str, start: int, body: str) -> None:
    tokens = [t.group(0) for t in _TOKEN.finditer(body) if not t.group(0).startswith("--")]
    value = tokens[tokens.index("=") + 1 :]
    if value[:1] != ["function"] and _calls(value):
        raise IncludeLayoutError(
            f"{filename}:{start + 1}: a top-level value may run no command or call "
            "(a definition no script uses is dropped with it)"
        )


def _calls(tokens: list[str]) -> bool:
    """Whether a token list holds a call: a name (not a keyword), ')' or ']' right before
    '(', a string or a table (Lua's f'x' and f{...} are calls too)."""
    for before, token in itertools.pairwise(tokens):
        callee = before in (")", "]") or (
            re.fullmatch(_NAME, before) is not None and before not in _KEYWORDS
        )
        if callee and token[0] in "({'\"":
            return True
    return False


def expand(text: str, includes: Mapping[str, str]) -> str:
    """Command script ``text`` with each ``-- @include`` line replaced by the definitions of
    that include file (``includes``: file name -> text) the script reaches. Raises
    ``IncludeLayoutError`` for an include file outside the layout, ``KeyError`` for an
    unknown include, ``ValueError`` for a name two included files define."""
    files = INCLUDE.findall(text)
    parts = {name: _blocks(name, includes[name]) for name in files}
    _check_unique(parts)
    wanted = set(names_used(INCLUDE.sub("", text)))
    kept: set[tuple[str, int]] = set()
    grew = True
    while grew:  # until no kept block names one more definition
        grew = False
        for name, found in parts.items():
            for i, block in enumerate(found):
                if (name, i) in kept:
                    continue
                if block.assigns in wanted or wanted.intersection(block.defines):
                    kept.add((name, i))
                    wanted |= block.uses
                    grew = True

    def paste(match: re.Match[str]) -> str:
        name = match.group("file")
        chosen = [b.text for i, b in enumerate(parts[name]) if (name, i) in kept]
        return "".join(chosen).rstrip("\n") or f"-- {name}: nothing used"

    return INCLUDE.sub(paste, text)


@functools.lru_cache(maxsize=64)
def _blocks(filename: str, text: str) -> tuple[Block, ...]:
    """``blocks``, parsed once per include text: scripts include the same few files."""
    return tuple(blocks(filename, text))


def _check_unique(parts: Mapping[str, Sequence[Block]]) -> None:
    seen: dict[str, str] = {}
    for name, found in parts.items():
        for block in found:
            for defined in block.defines:
                if defined in seen:
                    raise ValueError(f"{defined} is defined in {seen[defined]} and in {name}")
                seen[defined] = name
