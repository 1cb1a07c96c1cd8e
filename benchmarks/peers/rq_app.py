"""RQ's benchmark jobs: plain functions RQ imports by path; ``rq worker`` runs them."""

from __future__ import annotations

from benchmarks.peers._sync_jobs import JOBS

noop_sync = JOBS["noop_sync"]
stamp = JOBS["stamp"]
ran_sync = JOBS["ran_sync"]
io_sync = JOBS["io_sync"]
