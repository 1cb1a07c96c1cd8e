"""The Redis layout of the Redis broker: every key name, and the format of what they hold.

All keys of one broker share the hash tag ``{<prefix>}`` (default ``{taskit}``), so every key of a
queue, and every key any one script touches, lives in one Cluster slot. (Per-queue tags cannot
work with this contract: ``get``, ``cancel`` and unique ids are by job id alone, a batch enqueue
spans queues all-or-none, and a multi-queue blocking reserve waits on several queues at once.)
One broker is one slot, so its connections go to the one master serving it (``transport.locate``
finds and follows it); a sharded broker (Sharding, below) is several such brokers, one per slot.

==========================  ======  ===================================================
key                         type    holds
==========================  ======  ===================================================
``{p}:jobs``                hash    live job id -> its record: state and spec (below)
``{p}:err``                 hash    live job id -> msgpack ``[error, type, traceback]``,
                                    then its failed attempts (``lua/_attempts.lua``)
``{p}:progress``            hash    live job id -> msgpack ``Progress`` (its latest report)
``{p}:seq``                 string  sequence counter (ranked-set order, dead letters)
``{p}:queues``              set     every queue name ever enqueued to
``{p}:done:<id>``           hash    a finished job: spec, state, err, res, prog; has a TTL
``{p}:q:<queue>:fifo``      list    ready ids of the default priority (0), oldest first
``{p}:q:<queue>:ranked``    zset    ready ``<seq>:<id>`` of other priorities, scored
                                    ``-priority``
``{p}:q:<queue>:delayed``   zset    scheduled / retrying id scored by due time (ms)
``{p}:q:<queue>:leases``    zset    running id scored by lease deadline (ms)
``{p}:q:<queue>:dead``      zset    dead-lettered id scored by ``seq`` (oldest first)
``{p}:q:<queue>:totals``    hash    ``completed`` / ``failed`` counters
``{p}:q:<queue>:wake``      list    wake-up tokens (at most 16) for blocked reserves
``{p}:q:<queue>:groups``    zset    ready grouped jobs of the default priority (fair
                                    turns): ``<group>\0<seq>\0<id>``, all scored 0
                                    (ordered by member: by group, then FIFO)
``{p}:q:<queue>:turns``     list    each group with ready jobs once, and ``\0`` for
                                    the ungrouped (FIFO) jobs: the rotation of turns;
                                    absent while no group has ready jobs
``{p}:q:<queue>:groupof``   hash    live grouped job id -> its group
``{p}:claim:<key>``         string  a ``Broker.claim``, held until it expires (PX)
``{p}:once:<key>``          string  a once key (``Broker.begin_once``): ``run:<token>``
                                    for a hold, ``done:<token>`` once done; has a TTL
``{p}:workers``             zset    announced names (``Broker.announce``) by expiry (ms)
``{p}:beats``               hash    announced name -> its record
``{p}:epoch``               string  random id of this data set: gone or changed = data lost
``{p}:shards``              string  the largest shard count a sharded broker used on this
                                    prefix (absent: 1, never sharded; see Sharding)
``{p}:paused``              set     names of the paused queues (``Broker.pause_queue``)
``{p}:dedup``               hash    dedup key (``taskit.dedup``) -> the id of its kept job
``{p}:dedup:until``         zset    dedup key scored by the end of its window (ms)
``{p}:limits``              hash    limit name -> its definition: ``<concurrency>|<rate>|``
                                    ``<per ms>|<burst>`` (each ``''`` for none)
``{p}:limits:holding``      zset    ``<limit key>\0<id>`` of each job holding a slot (all
                                    scores 0: ordered, counted by member, ``ZLEXCOUNT``)
``{p}:limits:waiting``      zset    ``<limit key>\0<seq>\0<id>`` of each job held back by a
                                    full limit key: FIFO per key (``seq``: 20 digits)
``{p}:limits:held``         hash    held-back job id -> ``<seq>`` (its place in line, kept
                                    until it starts), ``<seq>\0<limit key>`` while in line;
                                    a running job's id -> ``!<limit key>\0...``, its slots
``{p}:limits:freed``        zset    ``<queue>\0<seq>\0<id>`` of jobs let out of line, back
                                    at the front of their queue at its next reserve
``{p}:limits:rate``         zset    rate limit key scored by its theoretical arrival time
                                    (ms, GCRA); passed ones are swept
``{p}:limits:queued``       hash    queue -> how many of its jobs are held back (in a line
                                    or freed): ``stats`` counts them as queued
``{p}:stream:<name>``       stream  a capped log (``Broker.stream_add``), entry field ``e``;
                                    read by consumer groups (``taskit.audit``)
``{p}:wf:<id>``             hash    one workflow (``taskit.workflow``): its nodes, what
                                    each waits for, how each ended (``lua/_workflow.lua``);
                                    expires the result TTL after its last node ended
``{p}:wfnodes``             hash    live workflow node's job id -> its workflow id
``{p}:deferred``            hash    queue -> how many of its jobs are DEFERRED
``{p}:q:<queue>:<end>``     zset    finished-job index (browsing), end one of
                                    ``completed``, ``failed``, ``cancelled``: the id of
                                    each job that ended so with its record kept, scored
                                    by its end (ms); trimmed of ends older than the
                                    broker's result TTL as it is written, and expires
                                    that TTL after its last write; an entry whose
                                    done key is gone is dropped when listed
``{p}:counts:<minute>``     hash    per-minute counts (``Broker.counts``; minute: epoch
                                    seconds, a multiple of 60, server clock):
                                    ``<queue>\0<c>`` for c in e c f r d x (enqueued,
                                    completed, failed, retried, dead, cancelled) and
                                    ``<queue>\0t<i>`` (runs in bucket i); expires
                                    ``COUNTS_KEPT`` + 120 s after its last write
==========================  ======  ===================================================

Live jobs (waiting, running, dead letters) are fields of the fixed hashes and never carry a TTL;
finishing moves a job to its own ``done`` key, which expires after the result TTL. Because every
fixed hash and every queue key is named before a script runs, and a done key is only touched by a
script that was given the job id, every script gets every key it touches in KEYS, with one
exception: workflows. A job's end releases or ends the jobs waiting for it, in the same script
call, and those may be in any queue and have their own done keys; which ones is only known
inside the script (a cascade goes down any number of levels). So the scripts that end jobs
(enqueue, settle, cancel, purge, workflow-cancel) name those keys themselves: the queue keys,
done keys and workflow hashes of the jobs they reach, built in one place (``lua/_workflow.lua``)
from this broker's hash tag, so they lie in the same Cluster slot as every key passed. (The
queue keys so named include the finished-job indexes of the jobs a cascade ends.) The counts
hash is the second exception: its minute is the server's, read inside the script, so enqueue and
settle name it themselves, from the hash tag too (``lua/_counts.lua``).

The record format (what ``{p}:jobs`` holds) is in ``records``.

**Sharding.** A sharded broker (``?shards=N``, ``shards.sharded_redis``) spreads one App's queues
over N prefixes, each a complete copy of the layout above under its own hash tag, so each in a
Cluster slot of its own: shard 0 (the home shard) is ``{p}`` itself, exactly today's keys, and
each other shard is ``{p~j}`` for the first ``j = 1, 2, ...`` whose slot falls in one of the N
equal ranges of the 16384 slots that no shard holds yet (``shards.shard_prefixes``: the ranges
``redis-cli --cluster create`` gives N masters, so with N = masters each shard lands on its
own master). A job lives in one shard (``taskit.broker.placement``): its id picks it, or the
home shard for a job with limits, a dedup window or a workflow; claims, once keys,
announcements, streams, limits, workflows and the authoritative paused set live in the home
shard. ``{p}:shards`` keeps the largest shard count used on the prefix (each shard keeps its
own copy; the home shard's, checked before any other shard's, is the one every count shares):
a broker whose shards do not include every shard of that count (fewer shards, or a count that
places them anew; any multiple includes them) refuses to run, since the jobs on the shards it
lacks would be invisible to it; one that does records its count (``watch``, Shards). The
prefixes ``<p>~<j>`` belong to ``p``'s shards: give no other App such a prefix.
"""

from __future__ import annotations

from taskit.errors import ConfigurationError

__all__ = ["LIMIT_KINDS", "QUEUE_KINDS", "Keys"]

#: Queue key selections ``Keys.of`` remembers (a few per queue that is in use).
_REMEMBERED = 4096


class Keys:
    """Key names for one prefix. Queue keys are ``{prefix}:q:<queue>:<kind>``; queue names may
    hold any character (the last ``:`` part is always one of the fixed kinds)."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"Redis key prefix must be non-empty, without braces: {prefix!r}"
            )
        self.prefix = prefix
        self.tag = "{" + prefix + "}"
        self._of: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self.jobs = f"{self.tag}:jobs"
        self.err = f"{self.tag}:err"
        self.progress = f"{self.tag}:progress"
        self.seq = f"{self.tag}:seq"
        self.queues = f"{self.tag}:queues"
        self.workers = f"{self.tag}:workers"
        self.beats = f"{self.tag}:beats"
        self.epoch = f"{self.tag}:epoch"
        self.shards = f"{self.tag}:shards"
        self.paused = f"{self.tag}:paused"
        self.dedup = f"{self.tag}:dedup"
        self.dedup_until = f"{self.tag}:dedup:until"
        self.limits = f"{self.tag}:limits"
        self.wf_of = f"{self.tag}:wfnodes"
        self.wf_deferred = f"{self.tag}:deferred"
        #: Keys that only an older layout writes (its live-job hashes): found, they hold jobs
        #: this version cannot see.
        self.legacy = (f"{self.tag}:state", f"{self.tag}:spec")

    def limit_keys(self) -> list[str]:
        """The fixed keys of limits, in the order every script that takes them lists them:
        specs, holding, waiting, held, freed, rate, queued (see ``lua/_limits.lua``)."""
        return [self.limits, *(f"{self.limits}:{kind}" for kind in LIMIT_KINDS if kind)]

    def done(self, job_id: str) -> str:
        return f"{self.tag}:done:{job_id}"

    def workflow(self, workflow_id: str) -> str:
        """The hash of one workflow (named the same way inside ``lua/_workflow.lua``)."""
        return f"{self.tag}:wf:{workflow_id}"

    def counts(self, minute: int) -> str:
        """The per-minute counts hash of ``minute`` (epoch seconds, a multiple of 60; named the
        same way inside ``lua/_counts.lua``)."""
        return f"{self.tag}:counts:{minute}"

    def claim(self, key: str) -> str:
        return f"{self.tag}:claim:{key}"

    def once(self, key: str) -> str:
        return f"{self.tag}:once:{key}"

    def stream(self, name: str) -> str:
        return f"{self.tag}:stream:{name}"

    def queue(self, queue: str, kind: str) -> str:
        """Key ``kind`` (fifo, ranked, delayed, leases, dead, totals, wake) of ``queue``."""
        return f"{self.tag}:q:{queue}:{kind}"

    def fifo(self, queue: str) -> str:
        return self.queue(queue, "fifo")

    def ranked(self, queue: str) -> str:
        return self.queue(queue, "ranked")

    def delayed(self, queue: str) -> str:
        return self.queue(queue, "delayed")

    def leases(self, queue: str) -> str:
        return self.queue(queue, "leases")

    def dead(self, queue: str) -> str:
        return self.queue(queue, "dead")

    def totals(self, queue: str) -> str:
        return self.queue(queue, "totals")

    def wake(self, queue: str) -> str:
        return self.queue(queue, "wake")

    def of(self, queue: str, kinds: tuple[str, ...]) -> tuple[str, ...]:
        """The keys ``kinds`` (each one of ``QUEUE_KINDS``) of ``queue``, in that order: each
        script takes its own selection of a queue's keys (``requests``). Remembered per queue
        and selection (every enqueue, reserve and settle asks again), up to ``_REMEMBERED``
        of them; past that, forgotten all at once and remembered anew."""
        found = self._of.get((queue, kinds))
        if found is None:
            head = f"{self.tag}:q:{queue}:"
            found = tuple([head + kind for kind in kinds])
            if len(self._of) >= _REMEMBERED:
                self._of.clear()
            self._of[queue, kinds] = found
        return found

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.tag}*"

    def kind_of(self, key: str) -> str | None:
        """The Redis type (as ``TYPE`` names it) this layout keeps at ``key``; None for a key
        that is not this prefix's."""
        fixed = {self.jobs: "hash", self.err: "hash", self.progress: "hash", self.beats: "hash",
                 self.seq: "string", self.epoch: "string", self.shards: "string",
                 self.queues: "set",
                 self.workers: "zset", self.paused: "set", self.dedup: "hash",
                 self.dedup_until: "zset", self.wf_of: "hash",
                 self.wf_deferred: "hash"}  # fmt: skip
        if key in fixed:
            return fixed[key]
        if key == self.limits or key.startswith(self.limits + ":"):
            return LIMIT_KINDS.get(key[len(self.limits) + 1 :])
        parts = ((":done:", "hash"), (":claim:", "string"), (":once:", "string"),
                 (":stream:", "stream"), (":wf:", "hash"), (":counts:", "hash"),
                 (":q:", None))  # fmt: skip
        for part, kind in parts:
            if key.startswith(self.tag + part):
                return kind or QUEUE_KINDS.get(key.rpartition(":")[2])
        return None


#: Every key of a queue, by its last part (see ``Keys.queue``), and the Redis type it holds.
QUEUE_KINDS = {"fifo": "list", "wake": "list", "ranked": "zset", "delayed": "zset",
               "leases": "zset", "dead": "zset", "totals": "hash", "groups": "zset",
               "turns": "list", "groupof": "hash", "completed": "zset", "failed": "zset",
               "cancelled": "zset"}  # fmt: skip

#: The fixed keys of limits, by the part after ``{p}:limits`` (``""``: the specs hash itself), and
#: the Redis type each holds, in the order scripts take them (``Keys.limit_keys``).
LIMIT_KINDS = {"": "hash", "holding": "zset", "waiting": "zset", "held": "hash", "freed": "zset",
               "rate": "zset", "queued": "hash"}  # fmt: skip
