"""Where a job lives in a sharded broker (``taskit.broker.sharded``): which of its N shards.

A shard is a complete broker of its own (on Redis: one hash tag, so one Cluster slot). A job
lives in exactly one shard, for its whole life:

* a job that uses nothing across jobs lives in the shard of its id, ``shard_of(id)``: a hash of
  the id, so ``get``, ``cancel`` and a second enqueue of the same id (unique jobs) go to one
  shard, and jobs spread evenly over the shards;
* a job that carries flow-control ``limits`` or a ``dedup`` window lives in the **home** shard
  (``HOME``), where every limit's slots, lines and rates and every dedup window are kept, so a
  limit and a window stay one atomic count, exactly as on one shard;
* a job of a workflow (``workflow`` or ``after``) lives in its workflow's shard, so a job's end
  releases or ends the jobs waiting for it in the same atomic step, as on one shard. That is
  the home shard for a new workflow; the sharded broker decides it at enqueue
  (``ShardedBroker``), since a workflow that adopts jobs already stored lives where they are.

``place`` gives the first two rules; the broker applies the third. The hash is CRC-32 (zlib) of
the id's UTF-8 bytes, modulo the shard count: stable across processes, versions and platforms.
"""

from __future__ import annotations

import zlib

from taskit.job import Job

__all__ = ["HOME", "place", "shard_of"]

#: The home shard: limits, dedup windows, new workflows, claims, once keys, announcements,
#: streams and the paused queues are kept there.
HOME = 0


def shard_of(job_id: str, shards: int) -> int:
    """The shard of a job id among ``shards`` (0 when there is one)."""
    if shards == 1:
        return 0
    return zlib.crc32(job_id.encode()) % shards


def place(job: Job, shards: int) -> int:
    """The shard ``job`` is stored in, before its workflow is considered: ``HOME`` for a job
    with limits, a dedup window or a workflow; otherwise the shard of its id."""
    if job.limits or job.dedup is not None or job.workflow is not None or job.after is not None:
        return HOME
    return shard_of(job.id, shards)
