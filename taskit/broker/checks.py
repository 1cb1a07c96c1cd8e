"""What every broker shares besides the contract: the checks its methods make first, and the
stand-in jobs it answers for records it cannot read (``Broker`` itself is in ``base``)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from taskit.job import Job, JobSpec, JobStatus, KeptJob, job_of, kept_job, utc_from_timestamp
from taskit.limits import LimitSpec, check_limit_name

__all__ = [
    "check_queue",
    "check_specs",
    "check_stream",
    "check_usage",
    "corrupt_job",
    "kept_or_expired",
    "stand_in",
]

_NO_ARGUMENTS = msgspec.Raw(b"\x92\x90\x80")  # msgpack of [[], {}]


def stand_in(queue: str) -> JobSpec:
    """The spec a broker shows for a job of ``queue`` whose own spec cannot be read: no task, no
    arguments, created at the epoch."""
    return JobSpec(task="", queue=queue, payload=_NO_ARGUMENTS, created_at=utc_from_timestamp(0))


def corrupt_job(job_id: str, queue: str, why: str) -> Job:
    """What ``dead_letters`` lists for a dead letter of ``queue`` whose record cannot be read at
    all: status DEAD_LETTER, no task, no arguments, ``why`` as the error (``CorruptJobError``),
    so a listing never fails and can show it."""
    live = {"status": JobStatus.DEAD_LETTER, "error": why, "error_type": "CorruptJobError"}
    return job_of(stand_in(queue), job_id, queue, live)


def check_queue(queue: object) -> str:
    """``queue`` if it names a queue (non-empty text), else ``ValueError`` naming it."""
    if not isinstance(queue, str) or not queue.strip():
        raise ValueError(f"a queue name must be a non-empty string, got {queue!r}")
    return queue


def kept_or_expired(found: Job | None, job_id: str, queue: str) -> KeptJob:
    """What an enqueue answers for a job a dedup window dropped in favour of job ``job_id`` of
    ``queue``, which has finished: that job as ``get`` read it (``found``), or, once its record
    has expired, a stand-in (no task) with its id, CANCELLED, whose error says so."""
    if found is not None:
        return kept_job(found)
    why = f"job {job_id!r} kept by the dedup window has finished; its record has expired"
    live = {"status": JobStatus.CANCELLED, "error": why, "error_type": "Duplicate"}
    return kept_job(job_of(stand_in(queue), job_id, queue, live))


def check_specs(specs: Mapping[str, LimitSpec | None]) -> dict[str, LimitSpec | None]:
    """What ``set_limits`` checks first: every name a valid limit name, every value a
    ``LimitSpec`` or None (``TypeError``/``ValueError`` naming the first bad one)."""
    for name, spec in specs.items():
        check_limit_name(name)
        if spec is not None and not isinstance(spec, LimitSpec):
            raise TypeError(
                f"limit {name!r}: a definition must be a LimitSpec or None, got {spec!r}"
            )
    return dict(specs)


def check_usage(name: str, top: int) -> None:
    """What ``limit_usage`` checks first: a valid name, and ``top`` an int >= 1."""
    check_limit_name(name)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"limit_usage: top must be an int >= 1, got {top!r}")


def check_stream(**values: float) -> None:
    """What each broker's stream calls check first: ``ValueError`` naming the first of
    ``values`` (counts and durations) that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"a stream's {name} must be > 0, got {value!r}")
