"""The workflow codec of the Redis broker: what a workflow's hash holds (``lua/_workflow.lua``),
read back as a ``WorkflowState`` and ``JobResult`` s, and what an enqueue sends of each node.

Lists of ids travel and are stored as ``<bytes>:<text>`` pieces one after another (``pack_ids``),
which any text survives and the scripts read without a msgpack library. A node's end is kept as
``<status>|<n>|<error><result>``: its error hash value (``n`` bytes) and its msgpack
``JobResult``, each empty when absent, so its result here is ``taskit.job.result_of`` of its
job as it ended, exactly as the memory broker gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from taskit.broker.redis.records import decode_error
from taskit.dependencies import IfFailed
from taskit.errors import CorruptJobError
from taskit.job import Job, JobResult, JobStatus, result_of, utc_from_timestamp
from taskit.workflow import WorkflowNode, WorkflowState

__all__ = ["build_state", "end_result", "node_args", "pack_ids", "unpack_ids"]

_RESULT = msgspec.msgpack.Decoder(JobResult)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_PAYLOAD = msgspec.Raw(b"\x90")


def pack_ids(items: Sequence[str]) -> bytes:
    """``items`` as one string the scripts split again (see the module docstring)."""
    out = bytearray()
    for item in items:
        raw = item.encode()
        out += b"%d:%s" % (len(raw), raw)
    return bytes(out)


def unpack_ids(raw: bytes) -> list[str]:
    """The texts of ``pack_ids``; ``ValueError`` if ``raw`` is not such a string."""
    out, i = [], 0
    while i < len(raw):
        colon = raw.index(b":", i)
        n = int(raw[i:colon])
        out.append(raw[colon + 1 : colon + 1 + n].decode())
        i = colon + 1 + n
    return out


def node_args(job: Job, result_ttl_ms: int | None) -> tuple[str, bytes]:
    """What enqueue sends of node ``job`` after its workflow id: its if_failed (``-`` when it
    waits for nothing) with its own result TTL in ms, and its task, queue and parents."""
    after = job.after
    mode = "-" if after is None else ("c" if after.if_failed is IfFailed.CONTINUE else "f")
    own = "" if result_ttl_ms is None else str(result_ttl_ms)
    parents = () if after is None else after.jobs
    return mode + own, pack_ids([job.task, job.queue, *parents])


def end_result(raw: bytes, job_id: str = "") -> tuple[JobStatus, JobResult]:
    """The final status and result of a node's end record (see the module docstring);
    ``CorruptJobError`` naming the job if it does not read."""
    try:
        status, n, rest = raw.split(b"|", 2)
        if int(n) > len(rest):
            raise ValueError(f"its error is cut short: {raw[:80]!r}")
        err, res = rest[: int(n)], rest[int(n) :]
        error, error_type, traceback = decode_error(err)[:3] if err else (None, None, None)
        job = Job(
            id=job_id,
            task="",
            queue="",
            payload=_NO_PAYLOAD,
            created_at=_EPOCH,
            status=JobStatus(status.decode()),
            error=error,
            error_type=error_type,
            traceback=traceback,
            result=_RESULT.decode(res) if res else None,
        )
    except (ValueError, msgspec.DecodeError) as exc:
        raise CorruptJobError(job_id, "workflow end", f"does not read: {exc}") from None
    return job.status, result_of(job)


def build_state(
    workflow_id: str, fields: Sequence[bytes], states: Sequence[bytes]
) -> WorkflowState:
    """The ``WorkflowState`` of a workflow hash's ``fields`` (flat, as HGETALL gives them) and
    the live ``states`` of its nodes that have not ended (flat: id, state string);
    ``CorruptJobError`` naming the node whose entry does not read (damaged data)."""
    record = {fields[i]: fields[i + 1] for i in range(0, len(fields), 2)}
    live = {states[i].decode(): states[i + 1] for i in range(0, len(states), 2)}
    rows: list[tuple[int, WorkflowNode]] = []
    for name, value in record.items():
        if not name.startswith(b"n:"):
            continue
        job_id = name[2:].decode(errors="replace")
        try:
            order, _, _, packed = value.split(b"|", 3)
            task, queue, *parents = unpack_ids(packed)
            place = int(order)
        except ValueError as exc:
            raise CorruptJobError(job_id, "workflow node", f"does not read: {exc}") from None
        ended = record.get(b"e:" + name[2:])
        if ended is not None:
            status, result = end_result(ended, job_id)
            node = WorkflowNode(id=job_id, task=task, queue=queue, status=status,
                                after=tuple(parents), result=result)  # fmt: skip
        else:
            node = WorkflowNode(id=job_id, task=task, queue=queue,
                                status=_live_status(live.get(job_id, b"")),
                                after=tuple(parents))  # fmt: skip
        rows.append((place, node))
    rows.sort(key=lambda row: row[0])
    created = utc_from_timestamp(int(record.get(b"created", b"0")) / 1000)
    return WorkflowState(id=workflow_id, created_at=created, nodes=tuple(n for _, n in rows))


def _live_status(state: bytes) -> JobStatus:
    """A live node's status from its state string (its first field). A node whose record is
    gone or unreadable without an end shows PENDING: it has not ended for its workflow."""
    head = state.split(b"|", 1)[0].decode(errors="replace")
    try:
        status = JobStatus(head)
    except ValueError:
        return JobStatus.PENDING
    return JobStatus.PENDING if status.finished else status
