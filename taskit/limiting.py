"""Limits as code declares and tasks use them (flow control: "Limits").

    exports = app.limit("exports", concurrency=2)                     # used per key below
    payment_api = app.limit("payment-api", concurrency=50)            # used bare: global
    api_token = app.limit("api-token", rate=100, per=60, burst=100)   # 100 starts a minute

    @app.task(limits=[exports.by("customer_id"), payment_api])        # key: an argument's value
    def export(customer_id: str) -> None: ...

    @app.task(limits=[api_token.by(lambda token, **_: token[:8])])    # key: a function of them
    async def call_api(token: str) -> None: ...

A ``Limit`` is a name and the definition the code gives it (``LimitSpec``, ``taskit.limits``);
``Limit.by(key)`` makes a ``LimitUse``: the limit counted per value of ``key``, an argument's name
or a function called with the bound arguments as keywords (returning a ``str`` or an ``int``). A
bare ``Limit`` in ``limits=[...]`` is the global limit: one count for every job that names it.

When a job is prepared, its task's ``LimitPlan`` turns the uses into the job's concrete limit
keys (``Job.limits``: ``"exports:acme"``, ``"payment-api"``); a task without limits has no plan
and pays nothing. The broker enforces the definitions it stores; ``LimitBook`` holds an App's
declared ones (code, and configuration: ``TASKIT_LIMITS_JSON``, which wins for a name both give)
for its workers to write where the broker has none.

Data layer: nothing here touches a broker; ``taskit.options`` checks the option with
``check_limits``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from taskit.errors import ConfigurationError
from taskit.limits import LimitSpec, check_limit_name, limit_key

__all__ = [
    "KeyFunction",
    "Limit",
    "LimitBook",
    "LimitPlan",
    "LimitUse",
    "check_limits",
    "parse_limits_json",
]

#: A limit key computed from a job's arguments, given as keywords: a ``str`` or an ``int``.
KeyFunction = Callable[..., str | int]


@dataclass(frozen=True, slots=True)
class Limit:
    """A named limit as code knows it: ``spec`` is the definition the code declares (``None``:
    a reference to a limit defined elsewhere, by configuration or in the broker). In a task's
    ``limits=[...]`` it is the global limit; ``by`` makes a per-key use of it."""

    name: str
    spec: LimitSpec | None = None

    def by(self, key: str | KeyFunction) -> LimitUse:
        """This limit counted per key: ``key`` names an argument of the task (its value is the
        key), or is a function called with the job's bound arguments as keywords that returns
        the key. ``TypeError`` for anything else."""
        if isinstance(key, str):
            if not key.isidentifier():
                raise ValueError(f"limit {self.name!r}: by() takes an argument name, got {key!r}")
        elif not callable(key):
            raise TypeError(
                f"limit {self.name!r}: by() takes an argument name or a function of the "
                f"arguments, got {type(key).__name__}"
            )
        return LimitUse(self, key)


@dataclass(frozen=True, slots=True)
class LimitUse:
    """A limit counted per key (``Limit.by``): the argument name or function giving the key."""

    limit: Limit
    key: str | KeyFunction


def check_limits(value: object) -> None:
    """The ``limits`` task option: a list or tuple of ``Limit`` / ``LimitUse``, each limit named
    once. ``TypeError``/``ValueError`` naming the problem."""
    if not isinstance(value, list | tuple):
        raise TypeError(
            f"limits must be a list of app.limit(...) limits or their .by(...) uses, "
            f"got {type(value).__name__}"
        )
    seen: set[str] = set()
    for item in value:
        if isinstance(item, LimitUse):
            name = item.limit.name
        elif isinstance(item, Limit):
            name = item.name
        else:
            raise TypeError(
                f"limits takes app.limit(...) limits or their .by(...) uses, got {item!r}"
            )
        if name in seen:
            raise ValueError(f"limits names limit {name!r} twice")
        seen.add(name)


def _key_text(task: str, name: str, source: str, value: object) -> str:
    """A computed key as text: a ``str`` as it is, an ``int`` in decimal; else ``TypeError``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(
        f"task {task!r}: the key of limit {name!r} ({source}) must be a str or an int, "
        f"got {type(value).__name__}"
    )


class LimitPlan:
    """How a task's jobs get their limit keys from their arguments. Built once per task (and per
    ``Task.options(limits=...)``); ``keys`` runs at each prepare. ``signature``: the task
    function's (``None``: arguments by keyword only, as a handler's payload or a task not
    registered here). An argument name the signature cannot take is refused here."""

    __slots__ = ("_fixed", "_keyed", "_positions", "_signature", "_task")

    def __init__(
        self, task: str, uses: Sequence[Limit | LimitUse], signature: inspect.Signature | None
    ) -> None:
        check_limits(uses)
        self._task = task
        self._signature = signature
        self._fixed = tuple(limit_key(u.name) for u in uses if isinstance(u, Limit))
        self._keyed = tuple((u.limit.name, u.key) for u in uses if isinstance(u, LimitUse))
        params = signature.parameters if signature is not None else {}
        self._positions = {
            p.name: i
            for i, p in enumerate(params.values())
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for name, key in self._keyed:
            if not isinstance(key, str) or signature is None or takes_any:
                continue
            param = params.get(key)
            if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ValueError(
                    f"task {task!r}: limit {name!r} is keyed by argument {key!r}, which the "
                    "function does not take"
                )

    def keys(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str, ...]:
        """The concrete limit keys of a job called with ``args`` and ``kwargs`` (already bound
        against the signature by the task): its global limits first, then its keyed ones, each
        in the order given (the order changes nothing: a job starts only when all allow).
        Raises ``TypeError`` for a missing argument or a key that is not a ``str``/``int``,
        ``ValueError`` for one holding NUL or too long."""
        if not self._keyed:
            return self._fixed
        found = list(self._fixed)
        bound: dict[str, Any] | None = None
        for name, key in self._keyed:
            if isinstance(key, str):
                value = self._argument(name, key, args, kwargs)
                source = f"argument {key!r}"
            else:
                if bound is None:
                    bound = self._bound(args, kwargs, name)
                value = _call_key(key, bound, self._task, name)
                source = "its key function"
            found.append(limit_key(name, _key_text(self._task, name, source, value)))
        return tuple(found)

    def _argument(
        self, name: str, key: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        if key in kwargs:
            return kwargs[key]
        position = self._positions.get(key)
        if position is not None and position < len(args):
            return args[position]
        bound = self._bound(args, kwargs, name)
        if key not in bound:
            raise TypeError(f"task {self._task!r}: limit {name!r}: key argument {key!r} is missing")
        return bound[key]

    def _bound(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str) -> dict[str, Any]:
        """Every argument by name, defaults included, ``**kwargs`` spread out."""
        if self._signature is None:
            if args:
                raise TypeError(
                    f"task {self._task!r} has no signature here: limit {name!r} takes its key "
                    "from arguments passed by keyword"
                )
            return dict(kwargs)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out: dict[str, Any] = {}
        for param_name, value in bound.arguments.items():
            if self._signature.parameters[param_name].kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[param_name] = value
        return out


def _call_key(fn: KeyFunction, bound: dict[str, Any], task: str, name: str) -> object:
    try:
        return fn(**bound)
    except Exception as exc:
        exc.add_note(f"computing the key of limit {name!r} for a job of task {task!r}")
        raise


class LimitBook(Mapping[str, LimitSpec]):
    """An App's declared limit definitions: those of its code (``App.limit``) and of its
    configuration (``TASKIT_LIMITS_JSON``). As a mapping it gives each name's declared
    definition, configuration winning over code: what a worker writes where the broker has
    none, and what ``taskit limit reset`` writes again."""

    def __init__(self, config: Mapping[str, LimitSpec] | None = None) -> None:
        self.code: dict[str, LimitSpec] = {}
        self.config: dict[str, LimitSpec] = dict(config or {})

    def declare(self, name: str, spec: LimitSpec | None) -> Limit:
        """The ``Limit`` named ``name``, recording the code's ``spec`` (``None``: declare
        nothing, a reference). ``ValueError`` if the code declared the name with another one."""
        check_limit_name(name)
        if spec is not None:
            known = self.code.setdefault(name, spec)
            if known != spec:
                raise ValueError(
                    f"limit {name!r} is declared twice with different values: {known} and {spec}"
                )
        return Limit(name, spec)

    def origin(self, name: str) -> Literal["config", "code"] | None:
        """Where ``name``'s declared definition comes from (``None``: not declared)."""
        return "config" if name in self.config else "code" if name in self.code else None

    def __getitem__(self, name: str) -> LimitSpec:
        spec = self.config.get(name)
        return spec if spec is not None else self.code[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.code
        yield from (name for name in self.config if name not in self.code)

    def __len__(self) -> int:
        return len(self.code.keys() | self.config.keys())


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    concurrency: int | None = None
    rate: int | None = None
    per: float = 1.0
    burst: int | None = None


def parse_limits_json(text: str, source: str = "TASKIT_LIMITS_JSON") -> dict[str, LimitSpec]:
    """Limit definitions from JSON text: an object of name to definition, e.g.
    ``{"exports": {"concurrency": 2}, "api-token": {"rate": 100, "per": 60}}``.
    ``ConfigurationError`` naming ``source``, the limit and the problem."""
    try:
        entries = msgspec.json.decode(text, type=dict[str, _Entry])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigurationError(
            f"{source}: not an object of limit definitions "
            f'(e.g. {{"exports": {{"concurrency": 2}}}}): {exc}'
        ) from None
    specs: dict[str, LimitSpec] = {}
    for name, entry in entries.items():
        try:
            check_limit_name(name)
            specs[name] = LimitSpec(
                concurrency=entry.concurrency, rate=entry.rate, per=entry.per, burst=entry.burst
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{source}: limit {name!r}: {exc}") from None
    return specs
