"""taskit: decorator-first background tasks with an async core and leased, fenced delivery.

Example::

    from taskit import App

    app = App()                      # TASKIT_BROKER_URL, else memory://

    @app.task(max_retries=3)
    async def send_email(to: str) -> None: ...

    await send_email.enqueue("ada@example.com")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskit.app import App
    from taskit.backoff import Exponential, Fixed
    from taskit.broker.base import Broker
    from taskit.broker.memory import MemoryBroker
    from taskit.canvas import Call, Chain, Chord, Group, Step, Workflow, chain, chord, group
    from taskit.config import Settings
    from taskit.dedup import Debounce, Throttle
    from taskit.errors import (
        BrokerAuthenticationError,
        BrokerConnectionError,
        BrokerError,
        BrokerOutcomeUnknownError,
        BrokerOutOfMemoryError,
        BrokerValueTooLargeError,
        ConfigurationError,
        CorruptJobError,
        DuplicateTaskError,
        Fail,
        JobNotFoundError,
        JobTimeoutError,
        OnceBusy,
        PayloadTooLargeError,
        ResultTimeoutError,
        Retry,
        SerializationError,
        TaskitError,
        UnknownTaskError,
        WorkflowCancelled,
        WorkflowFailed,
        WorkflowNotFoundError,
    )
    from taskit.events import EventKind, JobEvent
    from taskit.handlers import JobHandler
    from taskit.job import Job, JobResult, JobStatus, KeptJob, Progress, QueueStats
    from taskit.limiting import Limit, LimitUse
    from taskit.limits import LimitSpec, LimitUsage
    from taskit.once import Once
    from taskit.ports import JobCreator
    from taskit.progress import report_progress
    from taskit.service import JobService, JobStats, WorkerManager
    from taskit.task import Task, TaskVariant
    from taskit.worker import Worker, WorkerStats
    from taskit.workflow import WorkflowNode, WorkflowState, WorkflowStatus

    __version__: str

#: Where each public name lives. Names load on first use (PEP 562): ``import taskit`` costs
#: nothing, and a process pays only for what it reads; a Redis worker never loads the memory
#: broker, the canvas or the services (issue 19's start time and memory). The annotations
#: above give type checkers the same names.
_LAZY: dict[str, str] = {
    "App": "taskit.app",
    "Exponential": "taskit.backoff",
    "Fixed": "taskit.backoff",
    "Broker": "taskit.broker.base",
    "MemoryBroker": "taskit.broker.memory",
    "Call": "taskit.canvas",
    "Chain": "taskit.canvas",
    "Chord": "taskit.canvas",
    "Group": "taskit.canvas",
    "Step": "taskit.canvas",
    "Workflow": "taskit.canvas",
    "chain": "taskit.canvas",
    "chord": "taskit.canvas",
    "group": "taskit.canvas",
    "Settings": "taskit.config",
    "Debounce": "taskit.dedup",
    "Throttle": "taskit.dedup",
    "BrokerAuthenticationError": "taskit.errors",
    "BrokerConnectionError": "taskit.errors",
    "BrokerError": "taskit.errors",
    "BrokerOutcomeUnknownError": "taskit.errors",
    "BrokerOutOfMemoryError": "taskit.errors",
    "BrokerValueTooLargeError": "taskit.errors",
    "ConfigurationError": "taskit.errors",
    "CorruptJobError": "taskit.errors",
    "DuplicateTaskError": "taskit.errors",
    "Fail": "taskit.errors",
    "JobNotFoundError": "taskit.errors",
    "JobTimeoutError": "taskit.errors",
    "OnceBusy": "taskit.errors",
    "PayloadTooLargeError": "taskit.errors",
    "ResultTimeoutError": "taskit.errors",
    "Retry": "taskit.errors",
    "SerializationError": "taskit.errors",
    "TaskitError": "taskit.errors",
    "UnknownTaskError": "taskit.errors",
    "WorkflowCancelled": "taskit.errors",
    "WorkflowFailed": "taskit.errors",
    "WorkflowNotFoundError": "taskit.errors",
    "EventKind": "taskit.events",
    "JobEvent": "taskit.events",
    "JobHandler": "taskit.handlers",
    "Job": "taskit.job",
    "JobResult": "taskit.job",
    "JobStatus": "taskit.job",
    "KeptJob": "taskit.job",
    "Progress": "taskit.job",
    "QueueStats": "taskit.job",
    "Limit": "taskit.limiting",
    "LimitUse": "taskit.limiting",
    "LimitSpec": "taskit.limits",
    "LimitUsage": "taskit.limits",
    "Once": "taskit.once",
    "JobCreator": "taskit.ports",
    "report_progress": "taskit.progress",
    "JobService": "taskit.service",
    "JobStats": "taskit.service",
    "WorkerManager": "taskit.service",
    "Task": "taskit.task",
    "TaskVariant": "taskit.task",
    "Worker": "taskit.worker",
    "WorkerStats": "taskit.worker",
    "WorkflowNode": "taskit.workflow",
    "WorkflowState": "taskit.workflow",
    "WorkflowStatus": "taskit.workflow",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next read is a plain attribute
        return value
    # The version is looked up on first use: importlib.metadata costs a worker a few MB of
    # memory and tens of milliseconds of start-up for a name it never reads (issue 19).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("taskit")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "App",
    "Broker",
    "BrokerAuthenticationError",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerOutOfMemoryError",
    "BrokerOutcomeUnknownError",
    "BrokerValueTooLargeError",
    "Call",
    "Chain",
    "Chord",
    "ConfigurationError",
    "CorruptJobError",
    "Debounce",
    "DuplicateTaskError",
    "EventKind",
    "Exponential",
    "Fail",
    "Fixed",
    "Group",
    "Job",
    "JobCreator",
    "JobEvent",
    "JobHandler",
    "JobNotFoundError",
    "JobResult",
    "JobService",
    "JobStats",
    "JobStatus",
    "JobTimeoutError",
    "KeptJob",
    "Limit",
    "LimitSpec",
    "LimitUsage",
    "LimitUse",
    "MemoryBroker",
    "Once",
    "OnceBusy",
    "PayloadTooLargeError",
    "Progress",
    "QueueStats",
    "ResultTimeoutError",
    "Retry",
    "SerializationError",
    "Settings",
    "Step",
    "Task",
    "TaskVariant",
    "TaskitError",
    "Throttle",
    "UnknownTaskError",
    "Worker",
    "WorkerManager",
    "WorkerStats",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNode",
    "WorkflowNotFoundError",
    "WorkflowState",
    "WorkflowStatus",
    "__version__",
    "chain",
    "chord",
    "group",
    "report_progress",
]
