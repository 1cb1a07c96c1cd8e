"""Unit tests of taskit.backoff: retry-delay policies."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

import msgspec
import pytest

from taskit import App, Job, Retry, Settings
from taskit.backoff import Exponential, Fixed, as_policy
from taskit.execution import MAX_RETRY_DELAY, retry_or_dead
from taskit.job import OutcomeKind


def test_exponential_doubles_from_its_base() -> None:
    policy = Exponential(base=0.5, jitter=False)

    assert [policy(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_exponential_uses_its_factor() -> None:
    policy = Exponential(base=1.0, factor=3.0, jitter=False)

    assert [policy(attempt) for attempt in (1, 2, 3)] == [1.0, 3.0, 9.0]


def test_exponential_stops_at_its_cap() -> None:
    policy = Exponential(base=1.0, cap=10.0, jitter=False)

    assert [policy(attempt) for attempt in (4, 5, 6, 50)] == [8.0, 10.0, 10.0, 10.0]


@pytest.mark.parametrize("attempt", [0, -3])
def test_exponential_treats_attempts_below_one_as_the_first(attempt: int) -> None:
    assert Exponential(base=2.0, jitter=False)(attempt) == 2.0


def test_exponential_defaults() -> None:
    policy = Exponential(jitter=False)

    assert (policy(1), policy(2), policy(100)) == (1.0, 2.0, 3600.0)


@pytest.mark.parametrize("attempt", [2_000, 10**6, 10**12])
def test_exponential_survives_huge_attempt_numbers(attempt: int) -> None:
    assert Exponential(cap=60.0, jitter=False)(attempt) == 60.0
    assert 30.0 <= Exponential(cap=60.0, rng=random.Random(1))(attempt) <= 60.0


@pytest.mark.parametrize(("factor", "attempt"), [(2.0, 1025), (3.0, 700)])
def test_exponential_survives_attempts_just_past_float_range(factor: float, attempt: int) -> None:
    assert Exponential(factor=factor, cap=60.0, jitter=False)(attempt) == 60.0


@pytest.mark.parametrize(
    ("base", "factor"), [(0.0, 2.0), (1.0, 1.0)], ids=["zero-base", "unit-factor"]
)
def test_exponential_that_cannot_grow_stays_put_at_huge_attempts(
    base: float, factor: float
) -> None:
    policy = Exponential(base=base, factor=factor, cap=60.0, jitter=False)

    assert policy(5_000) == policy(1) == base


def test_jitter_stays_within_the_upper_half_of_the_nominal_delay() -> None:
    policy = Exponential(base=1.0, cap=100.0, rng=random.Random(1234))
    nominal = Exponential(base=1.0, cap=100.0, jitter=False)

    for attempt in range(1, 12):
        draws = [policy(attempt) for _ in range(200)]
        low, high = nominal(attempt) / 2, nominal(attempt)
        assert all(low <= draw <= high for draw in draws)
        # The draws spread over the range rather than sticking to one value.
        assert max(draws) - min(draws) > (high - low) / 2


def test_jitter_with_a_seeded_random_is_reproducible() -> None:
    first = Exponential(rng=random.Random(7))
    second = Exponential(rng=random.Random(7))

    assert [first(a) for a in range(1, 10)] == [second(a) for a in range(1, 10)]


def test_exponential_with_a_zero_base_never_waits() -> None:
    policy = Exponential(base=0.0, rng=random.Random(3))

    assert [policy(attempt) for attempt in range(1, 20)] == [0.0] * 19


@pytest.mark.parametrize(
    ("field", "value"),
    [("base", -1.0), ("cap", -0.5), ("factor", 0.5)],
)
def test_exponential_rejects_bad_parameters(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Exponential(**{field: value})  # type: ignore[arg-type]


def test_exponentials_compare_by_parameters_not_by_random_source() -> None:
    assert Exponential(base=2.0, rng=random.Random(1)) == Exponential(
        base=2.0, rng=random.Random(2)
    )
    assert Exponential(base=2.0) != Exponential(base=3.0)


def test_fixed_gives_the_same_delay_every_time() -> None:
    policy = Fixed(2.5)

    assert [policy(attempt) for attempt in (1, 2, 10, 10**9)] == [2.5] * 4


def test_fixed_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        Fixed(-1.0)


@pytest.mark.parametrize("number", [3, 0.25, 0])
def test_as_policy_makes_a_number_the_exponential_base(number: float) -> None:
    policy = as_policy(number)

    assert policy == Exponential(base=float(number))


def test_as_policy_returns_a_callable_as_it_is() -> None:
    def custom(attempt: int) -> float:
        return attempt * 10.0

    fixed = Fixed(1.0)

    assert as_policy(custom) is custom
    assert as_policy(fixed) is fixed


@pytest.mark.parametrize("bad", [True, False, "1.5", None, [1.0]], ids=repr)
def test_as_policy_rejects_what_is_neither_seconds_nor_a_policy(bad: object) -> None:
    with pytest.raises(TypeError, match="backoff must be seconds"):
        as_policy(bad)  # type: ignore[arg-type]


def test_as_policy_rejects_negative_seconds() -> None:
    with pytest.raises(ValueError, match="base"):
        as_policy(-1.0)


@pytest.mark.parametrize("policy", [Fixed, Exponential])
def test_a_nan_delay_is_rejected(policy: Callable[[float], object]) -> None:
    with pytest.raises(ValueError, match="nan"):
        policy(float("nan"))


# -- how the executor and the reaper use a policy (taskit.execution.retry_or_dead) --------------
def _job(attempts: int, max_retries: int) -> Job:
    app = App("memory://", settings=Settings())

    @app.task(max_retries=max_retries)
    async def work() -> None: ...

    return msgspec.structs.replace(work.prepare(), attempts=attempts)


def test_a_policy_is_not_asked_after_the_final_attempt() -> None:
    def rq_style(attempt: int) -> float:  # docs/migrating.md's spelling of RQ's interval list
        return [10.0, 60.0][attempt - 1]

    outcomes = [retry_or_dead(_job(n, 2), "token", OSError("down"), rq_style) for n in (1, 2, 3)]

    assert [(o.kind, o.delay) for o in outcomes] == [
        (OutcomeKind.RETRY, 10.0),
        (OutcomeKind.RETRY, 60.0),
        (OutcomeKind.DEAD_LETTER, 0.0),
    ]


@pytest.mark.parametrize(
    "policy",
    [lambda n: 1 / 0, lambda n: -5, lambda n: None, lambda n: "3", lambda n: False],
    ids=["raises", "negative", "none", "string", "bool"],
)
def test_a_broken_policy_never_loses_the_job(
    policy: Callable[[int], float], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskit.execution"):
        outcome = retry_or_dead(_job(1, 3), "token", OSError("down"), policy)

    assert outcome.kind is OutcomeKind.RETRY
    assert 0.5 <= outcome.delay <= 1.0  # the default backoff for attempt 1
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    "answer", [10**400, math.inf, 1e300], ids=["int-past-float", "inf", "1e300"]
)
def test_a_policy_answering_a_huge_delay_is_cut_to_the_longest(answer: float) -> None:
    # an int too large for a float raised OverflowError out of the runner: the worker died
    outcome = retry_or_dead(_job(1, 3), "token", OSError("down"), lambda n: answer)

    assert (outcome.kind, outcome.delay) == (OutcomeKind.RETRY, MAX_RETRY_DELAY)


@pytest.mark.parametrize("delay", [10**400, True, "soon", math.nan, -1], ids=repr)
def test_a_retry_with_a_junk_delay_says_so(delay: object) -> None:
    with pytest.raises(ValueError, match="retry delay must be a finite number of seconds"):
        Retry(delay=delay)  # type: ignore[arg-type]
