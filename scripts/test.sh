#!/usr/bin/env bash
# Sets up .venv (if needed) with taskit and its dev, redis and examples extras (the examples'
# tests need FastAPI and Flask and must not skip), then runs the whole test suite.
# Extra arguments go to pytest (and skip the cluster profile below). Tests that need Redis
# use 127.0.0.1:6379.
# The editable install is a plain path entry (pyproject.toml maps the root as the package
# directory), not an import hook, so mypy finds taskit in it: tests/test_typing.py checks that
# from outside the tree, and a wheel install too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,redis,examples]' 2>&1 \
  | { grep -v -e "is ignored: it is neither a file nor a directory" || true; }
# Both runs use two pytest-xdist worker processes (the suite waits on subprocesses, servers and
# timers as much as it computes: about half the wall time of one process on 2 cores).
# --dist loadfile sends each test module whole to one worker, so a module's tests run one after
# another in one process, as in a plain run: its module fixtures are made once, and what its
# tests share (tests/e2e flushes Redis db 9; the Django walkthrough's fixed table names) is
# never touched by two at once (not --dist loadgroup: from pytest 9.2 on it ignores the
# xdist_group marks silently, pytest-xdist issue 1386). Tests of different modules may run at the same time: none
# changes or counts what is the whole shared server's (those use a redis-server of their own).
# Each worker starts its own session Redis Cluster or Sentinel set when a module of its needs
# one. `-n 0` among the extra arguments runs in one process; plain `pytest` does so too.
XDIST=(-n 2 --dist loadfile)
.venv/bin/python -m pytest "${XDIST[@]}" "$@"
# The cluster profile, with no arguments (the whole suite): the broker conformance suite once
# more, on a Redis Cluster of the tests' own (the fast-cluster kind of
# tests/broker/_redis_kinds.py, ~40 s), and on sharded brokers of three Redis shards, on the
# real server and on that cluster (fast-sharded, fast-cluster-sharded: tests/broker/_sharded.py).
if [ "$#" -eq 0 ]; then
  TASKIT_TEST_CLUSTER=1 .venv/bin/python -m pytest "${XDIST[@]}" -q -p no:randomly tests/broker \
    -k "fast-cluster or fast-sharded"
fi
