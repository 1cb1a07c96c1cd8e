"""The include expander (``taskit.broker.redis.includes``): each command script gets the helpers
it reaches, and every include file keeps the layout the expander relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from taskit.broker.redis.includes import (
    INCLUDE,
    IncludeLayoutError,
    blocks,
    expand,
    names_used,
)
from taskit.broker.redis.scripts import SCRIPTS
from tests._ci import missing

FOLDER = resources.files("taskit.broker.redis").joinpath("lua")
TEXTS = {entry.name: entry.read_text("utf-8") for entry in FOLDER.iterdir()}
INCLUDES = sorted(name for name in TEXTS if name.startswith("_"))
COMMANDS = sorted(name for name in TEXTS if not name.startswith("_"))


@pytest.mark.parametrize("name", INCLUDES)
def test_every_include_file_keeps_the_layout(name: str) -> None:
    found = blocks(name, TEXTS[name])
    # Every line lands in exactly one block, in order: nothing is lost or pasted twice.
    assert "".join(b.text for b in found) == TEXTS[name]
    assert all(b.defines or b.assigns for b in found)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("local x = 1\nif x then\n  x = 2\nend\n", "2: a top-level line must be"),
        ("local x = rcall('TIME')\n", "1: a top-level value may run no command"),
        ("-- a\nlocal t = {1, 2}\nlocal y = string.rep('a', 3)\n", "3: a top-level value"),
        ("local x = f{1}\n", "1: a top-level value"),
        ("  local x = 1\n", "1: code before any definition"),
        ("--[[ a\nlong comment\n]]\nlocal x = 1\n", "2: a top-level line must be"),
    ],
)
def test_a_file_outside_the_layout_is_refused_naming_the_line(text: str, why: str) -> None:
    with pytest.raises(IncludeLayoutError, match=f"_x.lua:{why}"):
        blocks("_x.lua", text)


def test_values_that_run_nothing_pass() -> None:
    text = (
        "local A, B = nil, nil\nlocal T = {x = true, [1] = 'y', '?z'}\n"
        "local P = '^a' ..\n  'b'\nlocal f = function(k)\n  return rcall('GET', k)\nend\n"
    )
    assert [b.defines for b in blocks("_x.lua", text)] == [("A", "B"), ("T",), ("P",), ("f",)]


def test_names_are_names_not_fields_strings_or_comments() -> None:
    code = (
        "local a = b.c + d:e(f) .. g -- h\n"
        "local s = 'i' .. \"j\" .. [[k]] --[[ l\n m ]] .. n[1] .. 1e5 .. ..."
    )
    assert names_used(code) - {"local"} == {"a", "b", "d", "f", "g", "s", "n"}


INC = {
    "_a.lua": (
        "-- header of _a\n\nlocal K = 1\n\n-- used by g only\nlocal function f()\n  return K\n"
        "end\n\nlocal function g()\n  return f()\nend\n\nlocal hook = nil\n\n"
        "local function unused()\n  return 2\nend\n"
    ),
    "_b.lua": "-- header of _b\nlocal function h()\n  return 3\nend\n\nhook = function()\nend\n",
}


def test_an_include_pastes_what_the_script_reaches_transitively_in_file_order() -> None:
    text = "local rcall = redis.call\n-- @include _a.lua\n-- @include _b.lua\nreturn g()\n"
    out = expand(text, INC)
    for kept in ("local function g()", "local function f()", "local K = 1"):
        assert kept in out
    for left in ("unused", "local function h", "hook"):
        assert left not in out
    assert out.index("local K") < out.index("local function f") < out.index("local function g")
    assert "-- _b.lua: nothing used" in out
    assert out.endswith("return g()\n")


def test_an_assignment_goes_with_the_name_it_sets() -> None:
    text = "-- @include _a.lua\n-- @include _b.lua\nif hook then hook() end\n"
    out = expand(text, INC)
    assert "local hook = nil" in out
    assert "hook = function()" in out
    assert "local function g" not in out


def test_a_name_two_includes_define_is_refused() -> None:
    texts = {**INC, "_b.lua": "local function f()\nend\n"}
    with pytest.raises(ValueError, match=r"f is defined in _a\.lua and in _b\.lua"):
        expand("-- @include _a.lua\n-- @include _b.lua\nreturn f()\n", texts)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_script_keeps_each_definition_it_names(name: str) -> None:
    """The loaded source defines every include name the script's text names (never a global
    lookup of a helper that was left out), and nothing it does not reach."""
    script = SCRIPTS[re.sub(r"-(\d+|n)\.lua$", "", name)]  # type: ignore[index]
    source = script.source.decode()
    included = {n: blocks(n, TEXTS[n]) for n in INCLUDE.findall(TEXTS[name])}
    defined = {d for found in included.values() for b in found for d in b.defines}
    kept = {
        name.strip()
        for found in re.findall(r"^local (?:function )?([\w, ]+?) *[=(]", source, re.MULTILINE)
        for name in found.split(",")
    }
    assert names_used(INCLUDE.sub("", TEXTS[name])) & defined <= kept
    for found in included.values():
        for block in found:
            if block.defines and set(block.defines) <= kept:
                assert block.uses & defined <= kept, block.defines


@pytest.mark.parametrize("name", SCRIPTS.names)
def test_every_loaded_script_compiles_and_reads_no_global_but_redis_and_lua(
    name: str, tmp_path: Path
) -> None:
    """luac lists every global a chunk reads (GETGLOBAL): a helper left out would show up."""
    if shutil.which("luac5.1") is None:  # .ci/run installs it (Debian's lua5.1)
        missing("needs luac5.1 (the Lua of Redis; Debian's lua5.1)")
    path = tmp_path / f"{name}.lua"
    path.write_bytes(SCRIPTS[name].source)  # type: ignore[index]
    listing = subprocess.run(
        ["luac5.1", "-p", "-l", str(path)], check=True, capture_output=True, text=True
    ).stdout
    read = set(re.findall(r"GETGLOBAL.*; (\w+)", listing))
    assert read <= {"redis", "KEYS", "ARGV", "string", "table", "math", "tonumber", "tostring",
                    "type", "unpack", "ipairs", "pairs", "error", "pcall", "cjson", "cmsgpack",
                    "select", "next", "assert", "bit"}  # fmt: skip
