"""Argument types at enqueue: the handler receives what was passed, or nothing is enqueued.

``add.enqueue("x", "y")`` for ``add(a: int, b: int)`` must raise ``TypeError`` naming the
parameter and both types; a value that the trip (msgpack, then conversion to the annotation) would
change (a tuple into ``Any``, a ``Decimal`` into ``Any``...) is refused; an annotated ``set``,
``tuple``, ``Decimal``, ``datetime``... arrives as itself. The property tests check the class:
for many annotation/value pairs, enqueue refuses or the handler gets an equal value of the same
type, and a value built to fit its annotation is always accepted.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskit import App, MemoryBroker, SerializationError, Task
from taskit.handlers import JobHandler
from taskit.job import Job, JobResult
from taskit.testing import Harness


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Box(msgspec.Struct):
    label: str
    items: list[int]


class Pair(NamedTuple):
    left: int
    right: str


pytestmark = pytest.mark.anyio


def make_app() -> App:
    return App(MemoryBroker())


# -- the defect: wrong types were accepted and failed only when the job ran ------------------
async def test_wrong_types_are_refused_at_enqueue_naming_the_parameter() -> None:
    app = make_app()

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    calls = [
        lambda: add.enqueue("x", "y"),
        lambda: add.enqueue(1, b="y"),
        lambda: add.schedule(5, "x", 2),
        lambda: app.enqueue(add.name, "x", 2),
        lambda: add.options(queue="other").enqueue("x", 2),
    ]
    for call in calls:
        with pytest.raises(TypeError) as caught:
            await call()
        text = str(caught.value)
        assert "must be int, got str" in text, text
        assert ("argument 'a'" in text) or ("argument 'b'" in text), text
    with pytest.raises(TypeError, match=r"argument 'b' must be int, got str 'y'"):
        add.enqueue_sync(1, "y")
    assert await app.stats() == {}  # nothing was enqueued


async def test_a_wrong_count_and_a_wrong_type_raise_the_same_class() -> None:
    app = make_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="missing a required argument"):
        add.prepare(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="argument 'a' must be int"):
        add.prepare("1", 2)  # type: ignore[arg-type]


def unannotated(x):  # type: ignore[no-untyped-def]
    return x


@pytest.mark.parametrize(
    ("annotation", "value", "reason"),
    [
        (Any, (1, 2), "tuple would arrive as list"),
        (Any, {1, 2}, "set would arrive as list"),
        (Any, frozenset({"a"}), "frozenset would arrive as list"),
        (Any, Decimal("1.50"), "Decimal would arrive as str"),
        (Any, datetime(2026, 1, 1), "datetime would arrive as str"),
        (Any, date(2026, 1, 1), "date would arrive as str"),
        (Any, uuid.UUID(int=7), "UUID would arrive as str"),
        (Any, bytearray(b"ab"), "bytearray would arrive as bytes"),
        (Any, Color.RED, "Color would arrive as str"),
        (Any, Point(1, 2), "Point would arrive as dict"),
        (Any, [1, (2, 3)], "tuple at [1] would arrive as list"),
        (dict[str, Any], {"k": {1}}, "set at ['k'] would arrive as list"),
        (int, Level.LOW, "Level would arrive as int"),
        (int, True, "must be int, got bool"),
        (str, "x", None),
        (list[int], (1, 2), "tuple would arrive as list"),
        (Sequence[int], (1, 2), "tuple would arrive as list"),
        (tuple[int, int], [1, 2], "list would arrive as tuple"),
        (set[int], frozenset({1}), "frozenset would arrive as set"),
        (bytes, bytearray(b"x"), "bytearray would arrive as bytes"),
        (datetime, datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), "pass it in UTC"),
        (Point, {"x": 1, "y": 2}, "dict would arrive as Point"),
        (Literal["a", "b"], "c", "must be Literal['a', 'b'], got str 'c'"),
        # an int where float is asked arrives as that float only if the float is exact
        (float, 2**53 + 1, "9007199254740993 would arrive as 9007199254740992.0"),
        (float | None, -(2**60) - 1, "would arrive as -1.152921504606847e+18"),
        (float, 2**53, None),
        # plain types in a union msgspec cannot decode: the worker would fail every such job
        (str | bytes, "x", "annotation str | bytes: Type unions may not contain more"),
        (str | bytes | None, None, "annotation str | bytes | None: Type unions"),
    ],
)
def test_a_value_the_trip_would_change_is_refused(
    annotation: Any, value: Any, reason: str | None
) -> None:
    app = make_app()

    def handler(x: Any) -> None:
        pass

    handler.__annotations__["x"] = annotation
    task = app.task(name="t")(handler)
    if reason is None:
        task.prepare(value)
        return
    with pytest.raises(TypeError) as caught:
        task.prepare(value)
    assert "task 't': argument 'x'" in str(caught.value)
    assert reason in str(caught.value)
    # an unannotated parameter is Any
    plain = app.task(name="plain")(unannotated)
    if annotation is Any:
        with pytest.raises(TypeError, match=reason.replace("[", r"\[")):
            plain.prepare(value)


def test_varargs_and_varkw_are_checked_element_by_element() -> None:
    app = make_app()

    @app.task
    def many(*nums: int, **tags: str) -> None:
        pass

    many.prepare(1, 2, a="x")
    with pytest.raises(TypeError, match=r"argument 'nums'\[1\] must be int, got str"):
        many.prepare(1, "2")
    with pytest.raises(TypeError, match=r"argument 'b' must be str, got int"):
        many.prepare(1, a="x", b=2)


def test_validate_false_opts_out_per_task_and_per_call() -> None:
    app = make_app()

    @app.task(validate=False)
    def loose(a: int) -> None:
        pass

    @app.task
    def strict(a: int) -> None:
        pass

    loose.prepare("x")  # type: ignore[arg-type]
    strict.options(validate=False).prepare("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        strict.prepare("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing a required argument"):
        loose.prepare()  # type: ignore[call-arg]  # the signature is still bound
    with pytest.raises(TypeError, match="validate must be a bool"):
        strict.options(validate="no")  # type: ignore[arg-type]


def test_an_unencodable_value_is_still_a_serialization_error() -> None:
    app = make_app()

    @app.task
    def f(a: Any) -> None:
        pass

    with pytest.raises(SerializationError, match="argument 'a'"):
        f.prepare(object())
    with pytest.raises(SerializationError, match="argument 'a'"):
        f.prepare(2**70)


async def test_a_handler_task_payload_must_survive_as_plain_values() -> None:
    app = make_app()
    seen: list[dict[str, Any]] = []

    class Echo(JobHandler):
        job_type = "echo"

        async def handle(self, job: Job) -> JobResult:
            seen.append(job.kwargs)
            return JobResult(success=True)

    task = app.register(Echo())
    with pytest.raises(TypeError, match="tuple would arrive as list"):
        await task.enqueue(pair=(1, 2))
    with Harness(app) as harness:
        await task.enqueue(pair=[1, 2], when="now")
        await harness.drain()
    assert seen == [{"pair": [1, 2], "when": "now"}]


# -- what is accepted arrives as itself, through a worker's executor -------------------------
async def test_annotated_values_reach_the_handler_as_passed() -> None:
    app = make_app()
    received: list[tuple[Any, ...]] = []

    @app.task
    async def rich(
        s: set[int], t: tuple[int, str], f: frozenset[str], d: Decimal, when: datetime,
        day: date, ident: uuid.UUID, color: Color, level: Level, p: Point, box: Box,
        pair: Pair, raw: bytearray, ratio: float, *rest: tuple[int, ...], **extra: set[str],
    ) -> None:  # fmt: skip
        received.append((s, t, f, d, when, day, ident, color, level, p, box, pair, raw, ratio,
                         rest, extra))  # fmt: skip

    sent = (
        {1, 2}, (1, "a"), frozenset({"x"}), Decimal("1.50"), datetime(2026, 1, 1, 12, 30),
        date(2026, 2, 3), uuid.UUID(int=42), Color.BLUE, Level.HIGH, Point(1, 2),
        Box("b", [1]), Pair(1, "r"), bytearray(b"\x00\xff"), 2, (1, 2), (3,),
    )  # fmt: skip
    with Harness(app) as harness:
        await rich.enqueue(*sent, tags={"a"})
        await rich.enqueue(*sent[:13], 2.5, when_utc={"b"})
        await harness.drain()
    assert len(received) == 2
    for got in received:
        for a, b in zip(sent[:13], got[:13], strict=True):
            assert (type(b), b) == (type(a), a)
    assert received[0][13:] == (2.0, ((1, 2), (3,)), {"tags": {"a"}})
    assert type(received[0][13]) is float  # the one conversion: an int where float is asked
    assert received[1][13:] == (2.5, (), {"when_utc": {"b"}})


# -- the class: property tests ----------------------------------------------------------------
ANNOTATIONS: list[Any] = [
    Any, int, float, str, bool, bytes, bytearray, None, int | None, str | int,
    list[int], list[Any], tuple[int, int], tuple[int, ...], tuple[Any, ...], set[int],
    frozenset[str], dict[str, int], dict[str, Any], dict[int, str], Sequence[int],
    Decimal, datetime, date, uuid.UUID, Color, Level, Point, Box, Pair, Literal[1, 2],
    list[tuple[int, str]], dict[str, set[int]], list[Point],
]  # fmt: skip

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
    st.text(max_size=5), st.binary(max_size=5),
)  # fmt: skip
_odd = st.one_of(
    st.integers().map(Decimal), st.decimals(allow_nan=True),
    st.datetimes(max_value=datetime(9000, 1, 1)),
    st.datetimes(max_value=datetime(9000, 1, 1), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]
    )),
    st.dates(), st.uuids(), st.sampled_from(list(Color)), st.sampled_from(list(Level)),
    st.binary(max_size=4).map(bytearray), st.builds(Point, st.integers(), st.integers()),
    st.builds(Box, st.text(max_size=3), st.lists(st.integers(0, 9), max_size=3)),
    st.builds(Pair, st.integers(0, 9), st.text(max_size=3)),
)  # fmt: skip
_hashable = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans())
VALUES = st.recursive(
    st.one_of(_scalars, _odd),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.sets(_hashable, max_size=3),
        st.frozensets(_hashable, max_size=3),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.dictionaries(st.integers(0, 9), inner, max_size=2),
    ),
    max_leaves=6,
)


def _same(a: Any, b: Any) -> bool:
    """Equal all the way down with the same types (the test's own oracle; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return (
            list(map(type, a)) == list(map(type, b))
            and list(a) == list(b)
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, set | frozenset):
        return {(type(x), x) for x in a} == {(type(x), x) for x in b}
    if isinstance(a, Point | Box):
        names = (
            [f.name for f in dataclasses.fields(a)] if isinstance(a, Point) else a.__struct_fields__
        )
        return all(_same(getattr(a, f), getattr(b, f)) for f in names)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal) and a.is_nan():
        return b.is_nan() and a.is_snan() == b.is_snan()
    if isinstance(a, datetime) and a.utcoffset() != b.utcoffset():
        return False
    return bool(a == b)


def _task_for(annotation: Any) -> Task[..., Any]:
    app = make_app()

    def handler(x: Any) -> None:
        pass

    handler.__annotations__["x"] = annotation
    return app.task(name="t")(handler)


TASKS = {i: _task_for(a) for i, a in enumerate(ANNOTATIONS)}


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(index=st.sampled_from(range(len(ANNOTATIONS))), value=VALUES)
def test_enqueue_refuses_or_the_handler_gets_the_same_value(index: int, value: Any) -> None:
    task = TASKS[index]
    try:
        job = task.prepare(value)
    except (TypeError, SerializationError):
        return  # refused: nothing was enqueued
    args, _ = task.load_arguments(job)  # what the worker passes to the handler
    got = args[0]
    annotation = ANNOTATIONS[index]
    if annotation is float and type(value) is int:  # the documented conversion
        assert type(got) is float
        assert got == value
        return
    assert _same(value, got), (annotation, value, got)


def _fitting(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of exactly the annotated type (no NaN in sets: NaN is not equal to itself)."""
    small = st.integers(-(2**63), 2**63 - 1)
    table: dict[Any, st.SearchStrategy[Any]] = {
        int: small, float: st.floats(), str: st.text(max_size=8), bool: st.booleans(),
        bytes: st.binary(max_size=8), bytearray: st.binary(max_size=8).map(bytearray),
        None: st.none(), int | None: st.none() | small, str | int: st.text() | small,
        list[int]: st.lists(small, max_size=4),
        tuple[int, int]: st.tuples(small, small),
        tuple[int, ...]: st.lists(small, max_size=4).map(tuple),
        set[int]: st.sets(small, max_size=4), frozenset[str]: st.frozensets(st.text(max_size=3)),
        dict[str, int]: st.dictionaries(st.text(max_size=3), small, max_size=3),
        dict[int, str]: st.dictionaries(small, st.text(max_size=3), max_size=3),
        Sequence[int]: st.lists(small, max_size=4),
        Decimal: st.decimals(allow_nan=False, places=3),
        datetime: st.datetimes(max_value=datetime(9000, 1, 1))
        | st.datetimes(max_value=datetime(9000, 1, 1), timezones=st.just(UTC)),
        date: st.dates(), uuid.UUID: st.uuids(), Color: st.sampled_from(list(Color)),
        Level: st.sampled_from(list(Level)), Point: st.builds(Point, small, small),
        Box: st.builds(Box, st.text(max_size=3), st.lists(small, max_size=3)),
        Pair: st.builds(Pair, small, st.text(max_size=3)), Literal[1, 2]: st.sampled_from([1, 2]),
        list[tuple[int, str]]: st.lists(st.tuples(small, st.text(max_size=2)), max_size=3),
        dict[str, set[int]]: st.dictionaries(st.text(max_size=2), st.sets(small, max_size=2)),
        list[Point]: st.lists(st.builds(Point, small, small), max_size=3),
        Any: _scalars, list[Any]: st.lists(_scalars, max_size=3),
        tuple[Any, ...]: st.lists(_scalars, max_size=3).map(tuple),
        dict[str, Any]: st.dictionaries(st.text(max_size=3), _scalars, max_size=3),
    }  # fmt: skip
    return table[annotation]


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(data=st.data(), index=st.sampled_from(range(len(ANNOTATIONS))))
def test_a_value_that_fits_its_annotation_is_accepted_and_arrives_as_itself(
    data: st.DataObject, index: int
) -> None:
    annotation = ANNOTATIONS[index]
    value = data.draw(_fitting(annotation))
    task = TASKS[index]
    args, _ = task.load_arguments(task.prepare(value))
    assert _same(value, args[0]), (annotation, value, args[0])


def test_convert_arguments_keeps_the_shape_of_the_call() -> None:
    """The CLI converts JSON values with it: positional stay positional, keywords keywords."""
    app = make_app()

    @app.task
    def f(a: int, *rest: float, k: tuple[int, int], **extra: set[int]) -> None:
        pass

    args, kwargs = f.convert_arguments([1, 2, 3], {"k": [1, 2], "z": [3]})
    assert (args, kwargs) == ([1, 2.0, 3.0], {"k": (1, 2), "z": {3}})
    assert type(args[1]) is float
    f.prepare(*args, **kwargs)  # and what it gives passes enqueue's check
