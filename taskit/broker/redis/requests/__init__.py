"""One request object per Lua script: its KEYS and ARGV, and its raw reply as a typed answer.

Each request names its script (``script``, the ``lua/<script>-<numkeys>.lua`` file), builds
``keys(k)`` and ``args()`` in the order that file's header lists them, and reads the reply that
header describes with ``answer(reply)`` (a ``Request[T]`` answers a ``T``), so the layout of a
call and of its reply is written once, next to its peers, instead of inline in the broker's
methods. The answer is a method of the request rather than a paired type because most replies
can only be read with what was asked (which queue is number ``q``, the lease length, the jobs
sent). A queue's keys come from ``Keys.of`` with the selection the script's header names
(``*_KINDS`` in ``admin`` and ``lifecycle``); ``tests/broker/test_requests.py`` checks each
request against its file: the key count, and each queue key's kind;
``tests/broker/test_answers.py`` reads raw replies.

``answer`` sees only a script's own replies: an error reply was raised by the transport before
it. Decoding rows into Jobs and Leases is in ``replies``. Durations arrive here already in
milliseconds (``ms``).
"""

from taskit.broker.redis.requests.admin import (
    Announce,
    Cancel,
    DeadLetters,
    Get,
    Live,
    Purge,
    PurgeDead,
    RequeueDead,
    Shards,
    Stats,
    Withdraw,
)
from taskit.broker.redis.requests.flow import Pause
from taskit.broker.redis.requests.lifecycle import (
    Enqueue,
    EnqueuePlain,
    Extend,
    Reclaim,
    Reserve,
    Settle,
)
from taskit.broker.redis.requests.limits import LimitsGet, LimitsSet, LimitsUsage, Wake
from taskit.broker.redis.requests.once import OnceBegin, OnceEnd
from taskit.broker.redis.requests.progress import SetProgress
from taskit.broker.redis.requests.request import BATCH, DeadElsewhere, Leased, Moved, Request
from taskit.broker.redis.requests.workflows import WorkflowCancel, WorkflowGet, WorkflowResults

__all__ = [
    "BATCH",
    "Announce",
    "Cancel",
    "DeadElsewhere",
    "DeadLetters",
    "Enqueue",
    "EnqueuePlain",
    "Extend",
    "Get",
    "Leased",
    "LimitsGet",
    "LimitsSet",
    "LimitsUsage",
    "Live",
    "Moved",
    "OnceBegin",
    "OnceEnd",
    "Pause",
    "Purge",
    "PurgeDead",
    "Reclaim",
    "Request",
    "RequeueDead",
    "Reserve",
    "SetProgress",
    "Settle",
    "Shards",
    "Stats",
    "Wake",
    "Withdraw",
    "WorkflowCancel",
    "WorkflowGet",
    "WorkflowResults",
]
