"""Ports: the narrow interfaces that code outside taskit depends on instead of a concrete service.

``JobCreator`` is the one port for creating jobs. An adapter (a webhook route, an event handler,
a trigger) takes a ``JobCreator`` and calls ``create_job``; ``taskit.JobService`` is one, and a
test hands the adapter a fake that records what it was asked::

    class Signup:
        def __init__(self, jobs: JobCreator) -> None:
            self.jobs = jobs

        async def __call__(self, email: str) -> None:
            await self.jobs.create_job("email.welcome", {"to": email}, queue_name="emails")

    assert isinstance(JobService(app), JobCreator)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from taskit.job import Job

__all__ = ["JobCreator"]


@runtime_checkable
class JobCreator(Protocol):
    """Anything that creates jobs by type name: ``create_job(job_type, payload, queue_name,
    priority)``, with ``queue_name`` and ``priority`` by position or keyword, returning the
    stored ``Job``. ``None`` for either keeps the task's own (its queue, priority 0; a higher
    priority runs first). Implementations may take more keywords (``JobService.create_job``
    takes ``scheduled_at``, ``max_retries``, ``metadata``, ``created_by``, ...).

    ``isinstance(x, JobCreator)`` checks only that ``x`` has a ``create_job`` method (what a
    runtime-checkable protocol can check); a type checker checks its signature.
    """

    async def create_job(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        queue_name: str | None = None,
        priority: int | None = None,
    ) -> Job:
        """Create and enqueue a job of the registered type ``job_type`` with ``payload`` (a
        mapping of string keys: the job's keyword arguments); return it as stored."""
        ...
