"""Benchmarks of taskit and its peers: scripts, not tests (see README.md)."""
