"""taskit: decorator-first background tasks with an async core and leased, fenced delivery.

Example::

    from taskit import App

    app = App()                      # TASKIT_BROKER_URL, else memory://

    @app.task(max_retries=3)
    async def send_email(to: str) -> None: ...

    await send_email.enqueue("ada@example.com")
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata when asked for: importlib.metadata
    # costs a process tens of milliseconds at start (a worker's start to its first job).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("taskit")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
