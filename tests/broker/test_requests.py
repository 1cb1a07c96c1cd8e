"""Each script's request object (``requests``) against its ``.lua`` file: every script has one,
the key count is what the file's name and header say, each key is the one the header names at
its place (per queue too), and the script reads no key past those."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources

import msgspec
import pytest

from taskit.broker.redis import requests
from taskit.broker.redis.keys import LIMIT_KINDS, Keys
from taskit.broker.redis.requests import browse
from taskit.broker.redis.scripts import SCRIPTS
from taskit.job import Job, encode_arguments

K = Keys("t")
QA, QB, QC = "qa", "q|b:x", "qc"  # queue names may hold any character


def job(job_id: str, queue: str) -> Job:
    return Job(id=job_id, task="t", queue=queue, payload=encode_arguments((), {}),
               created_at=datetime.now(UTC))  # fmt: skip


#: One request per script, and the queues it names in order (its per-queue key groups).
SAMPLES: list[tuple[requests.Request, list[str]]] = [
    (requests.Get("j"), []),
    (requests.Cancel("j", QA, 1000, 2000), []),
    (requests.Stats([QA, QB]), [QA, QB]),
    (requests.DeadLetters(QA, 0, 10), []),
    (requests.RequeueDead(QA, ["j"]), []),
    (requests.Purge(QA, 1000), []),
    (requests.PurgeDead(QA), []),
    (requests.Announce("w", b"rec", 1000), []),
    (requests.Withdraw("w"), []),
    (requests.Shards(3, (1, 3)), []),
    (requests.Live(), []),
    (requests.LimitsSet({"ex": None}, only_new=False), []),
    (requests.LimitsGet(), []),
    (requests.LimitsUsage("ex", 10), []),
    (requests.Wake([QA, QB]), [QA, QB]),
    (requests.OnceBegin("k", "t", 1000), []),
    (requests.OnceEnd("k", "t", 0), []),
    (requests.SetProgress([("a", "r1", b"p"), ("b", "r2", b"p")]), []),
    (
        requests.Enqueue(
            [job("a", QA), job("b", QB)],
            [(job("a", QA), b"s"), (job("b", QB), b"s")],
            [0, 5],
            [QA, QC],
        ),
        [QA, QB, QC],
    ),
    (
        requests.EnqueuePlain(
            [job("a", QA), job("b", QB)],
            [(job("a", QA), b"s"), (job("b", QB), b"s")],
            [0, 0],
            [QA, QC],
        ),
        [QA, QB, QC],
    ),
    (requests.Reserve([QA, QB], 3, 30_000, "stem"), [QA, QB]),
    (requests.Extend(30_000, [("a", QA, "r1"), ("b", QB, "r2")]), []),
    (
        requests.Settle(
            60_000,
            [("a", "r1", "complete", QA, 0, b"", b""), ("b", "r2", "retry", QB, 5, b"e", b"")],
        ),
        [QA, QB],
    ),
    (requests.Reclaim([QA, QB], 30_000, 100, "stem"), [QA, QB]),
    (requests.Pause(QA, True), []),
    (requests.WorkflowGet("w"), []),
    (requests.WorkflowResults("w", ["a", "b"]), []),
    (requests.WorkflowCancel("w", 1000), []),
    (browse.BrowseZset(QA, K.delayed(QA), "asc", "all", "", "", 10, 100, "", "live"), []),
    (browse.BrowseList(QA, "", 10, 100), []),
    (browse.BrowseLex(QA, K.limits + ":freed", "-", "+", "", 10, 100, False, "pending"), []),
    (browse.BrowseScan(QA, "0", 0, 10, 100), []),
    (browse.BrowseDone(QA, "completed", ["a", "b"]), []),
    (browse.CountsRead([60, 120]), []),
    (browse.Promote("j", QA), []),
    (browse.Locate(["a", "b"]), []),
    (browse.Forget([("a", QA), ("b", QB)]), [QA, QB]),
]

_QUEUE_NAMES = {"fifo": "FIFO list", "ranked": "ranked set", "delayed": "delayed set",
                "leases": "lease set", "dead": "dead set", "totals": "totals hash",
                "wake": "wake list", "groups": "group set", "turns": "turns list",
                "groupof": "group hash", "completed": "completed set",
                "failed": "failed set", "cancelled": "cancelled set"}  # fmt: skip


def named(key: str) -> tuple[str, str | None]:
    """What a header calls ``key``, and the queue it belongs to (None for other keys)."""
    fixed = {K.jobs: "jobs hash", K.err: "error hash", K.progress: "progress hash",
             K.seq: "sequence counter",
             K.queues: "queue-name set", K.workers: "workers zset",
             K.beats: "beats hash", K.paused: "paused set", K.dedup: "dedup hash",
             K.dedup_until: "dedup window set", K.limits: "limit specs hash",
             K.wf_of: "workflow node hash", K.wf_deferred: "deferred count hash",
             K.shards: "shards string"}  # fmt: skip
    if key in fixed:
        return fixed[key], None
    if key.startswith(K.tag + ":wf:"):
        return "the workflow's hash", None
    if key.startswith(K.tag + ":done:"):
        return "done key", None
    if key.startswith(K.tag + ":counts:"):
        return "counts hash", None
    if key.startswith(K.tag + ":once:"):
        return "once key", None
    if key.startswith(K.limits + ":"):
        kind = key.rpartition(":")[2]
        return f"limit {kind} {LIMIT_KINDS[kind]}", None
    head = K.tag + ":q:"
    assert key.startswith(head), key
    queue, _, kind = key[len(head) :].rpartition(":")
    return _QUEUE_NAMES[kind], queue


def lua(script: str) -> tuple[str, str]:
    """(header, body) of a script's file."""
    folder = resources.files("taskit.broker.redis").joinpath("lua")
    [text] = [e.read_text("utf-8") for e in folder.iterdir() if e.name.startswith(script + "-")
              and re.fullmatch(rf"{re.escape(script)}-(\d+|n)\.lua", e.name)]  # fmt: skip
    header, _, body = text.partition("]]")
    return header, body


def test_every_script_has_a_request() -> None:
    assert sorted(type(r).script for r, _ in SAMPLES) == SCRIPTS.names


@pytest.mark.parametrize(("request_", "queues"), SAMPLES, ids=[type(r).script for r, _ in SAMPLES])
def test_the_keys_are_the_ones_the_script_header_names(
    request_: requests.Request, queues: list[str]
) -> None:
    script = type(request_).script
    header, body = lua(script)
    keys = request_.keys(K)
    fixed: dict[int, str] = {}
    per_queue: dict[int, str] = {}
    tail: list[str] = []
    lasts: dict[int, str] = {}  # KEYS[#KEYS-n]: keys after every per-job one, n from the end
    for match in re.finditer(r"KEYS\[([^\]]+)\]((?:(?!KEYS\[).)*)", header, re.DOTALL):
        where, text = match.group(1), match.group(2).split("then")[0].strip()
        if where.isdigit():
            fixed[int(where)] = text
        elif where.startswith("base+"):
            per_queue[int(where[5:])] = text
        elif where.startswith("#KEYS"):
            lasts[int(where[5:] or "0")] = text
        else:  # one more key per job, lease or outcome
            tail.append(text)
    f, s = max(fixed, default=0), max(per_queue, default=0)
    if per_queue:
        base = re.search(r"base = (\d+) \+ (\d+) \* \(q - 1\)", header)
        assert base is not None, script
        assert (int(base.group(1)), int(base.group(2))) == (f, s), script
    for back, text in lasts.items():
        assert named(keys[-1 + back])[0] in text, (script, keys[-1 + back], text)
    keys = keys[: len(keys) - len(lasts)]
    extra = len(keys) - f - s * len(queues)
    assert extra == (2 if tail else 0), script  # each sample has two jobs / leases / outcomes
    if SCRIPTS[script].numkeys is not None:
        assert len(keys) == SCRIPTS[script].numkeys == f
    for i, text in fixed.items():
        assert named(keys[i - 1])[0] in text, (script, i, keys[i - 1], text)
    for q, queue in enumerate(queues):
        for j, text in per_queue.items():
            name, of = named(keys[f + s * q + j - 1])
            assert of == queue, (script, q, j)
            assert name in text, (script, j, text)
    for key in keys[f + s * len(queues) :]:
        assert named(key)[0] in tail[0], (script, key, tail)
    # The script reads no fixed key past those its header lists (per-queue keys by offset).
    read = [int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)]
    assert max(read, default=0) <= f, script
    if SCRIPTS[script].numkeys is not None:
        assert max(read) == f, script  # and every one of them is read


def test_args_follow_the_headers_for_the_batch_scripts() -> None:
    """Spot checks of ARGV against the headers (the broker's tests run every script)."""
    enqueue = requests.Enqueue(
        [job("a", QA), job("b", QB)], [(job("a", QA), b"s"), (job("b", QB), b"t")], [0, 5], [QA, QC]
    )
    assert enqueue.args()[:4] == [3, QA, QB, QC]
    assert enqueue.args()[4:8] == ["a", b"s", "1 1 0 0 -1", ""]
    assert enqueue.args()[8:12] == ["b", b"t", "2 3 0 5 -1", ""]
    settle = requests.Settle(9, [("a", "r1", "complete", QA, 0, b"", b""),
                                 ("b", "r2", "retry", QA, 5, b"e", b"")])  # fmt: skip
    assert settle.args() == [9, 1, "a", "r1 complete 1 0", b"", b"", "b", "r2 retry 1 5", b"e", b""]
    # and the progress hash, the workflow node hash and the deferred count hash, last
    assert len(settle.keys(K)) == 3 + 7 + 13 + 2 + 3
    extend = requests.Extend(7, [("a", QA, "r1")])
    assert extend.args() == [7, "a", "r1"]


def test_plain_enqueue_args_follow_its_header() -> None:
    jobs = [job("a", QA), job("b", QB)]
    assert requests.Enqueue.plain(jobs, [0, 0])
    two = requests.EnqueuePlain(jobs, [(j, b"s") for j in jobs], [0, 0], [QA, QC])
    assert two.args() == [3, QA, QB, QC, "a", b"s", "1 1", "b", b"s", "2 3"]
    per_queue = [K.fifo(QA), K.wake(QA), K.dead(QA), K.queue(QA, "groupof")]
    one = requests.EnqueuePlain([jobs[0]], [(jobs[0], b"s")], [0], [QA])
    assert one.keys(K) == [K.jobs, K.err, K.progress, K.queues, *per_queue, K.done("a")]
    assert one.args() == [1, QA, "a", b"s"]
    same = requests.EnqueuePlain(jobs[:1] * 2, [(jobs[0], b"s")] * 2, [0, 0], [QA, QA])
    assert same.keys(K) == [K.jobs, K.err, K.progress, K.queues, *per_queue, K.done("a"),
                            K.done("a")]  # fmt: skip
    assert same.args() == [1, QA, "a", b"s", "a", b"s"]


@pytest.mark.parametrize(
    "change",
    [{"priority": 1}, {"group": "g"}, {"scheduled_at": datetime(2030, 1, 1, tzinfo=UTC)}],
)
def test_a_batch_with_any_job_that_is_not_plain_goes_to_the_full_enqueue(
    change: dict[str, object],
) -> None:
    special = msgspec.structs.replace(job("b", QA), **change)
    assert not requests.Enqueue.plain([job("a", QA), special], [0, 0])
    assert not requests.Enqueue.plain([job("a", QA)], [5])  # a delay
