"""Built-in webhook delivery: POST a JSON payload, signed with HMAC-SHA256, retried with backoff.

    from taskit.webhooks import WebhookDelivery

    deliver = app.register(
        WebhookDelivery(secrets={"user.created": os.environ["HOOK_SECRET"]}),
        max_retries=8, backoff=2.0,
    )
    await deliver.enqueue(url="https://hooks.example.com/in", topic="user.created",
                          payload={"user_id": 42})

A delivery is one request: ``POST url`` with body ``json(payload)`` and the headers

| header                  | value                                                   |
|-------------------------|---------------------------------------------------------|
| ``Content-Type``        | ``application/json``                                    |
| ``X-Taskit-Signature``  | ``sha256=<hex HMAC-SHA256 of the exact body bytes>``    |
| ``X-Taskit-Topic``      | the topic                                               |
| ``X-Taskit-Delivery``   | the job id: the same on every retry, for de-duplication |
| ``X-Taskit-Attempt``    | 1 for the first try, 2 for the first retry, ...         |

The signature header's name is configurable. The secret is looked up by topic on the worker, from
the mapping or callable given to ``WebhookDelivery``; it is never part of the job. Receivers check
the signature with ``verify(secret, body, header_value)``.

| response                            | job                                                    |
|-------------------------------------|--------------------------------------------------------|
| 2xx                                 | COMPLETED; result value ``{"status", "body"}``          |
| network error, timeout, 5xx         | retried with the task's backoff, then dead-lettered     |
| any other status (4xx, 3xx)         | FAILED at once, no retry; the result value has both too |
| no secret for the topic             | FAILED at once (a configuration error)                  |

``body`` is the response body decoded as UTF-8 (invalid bytes replaced) and cut to ``max_body``
characters. Redirects are not followed: a 3xx is reported as it is.

HTTP goes through the standard library (``urllib.request``) in a worker thread: one short POST
per job needs neither a connection pool nor a new dependency. A job timeout abandons the thread,
which ends by itself within ``request_timeout`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import msgspec

from taskit.config import MAX_SECONDS
from taskit.handlers import JobHandler
from taskit.job import Job, JobResult

__all__ = ["SecretLookup", "WebhookDelivery", "WebhookError", "sign", "verify"]

#: Where a topic's signing secret comes from: a mapping, or a callable returning ``None`` for an
#: unknown topic.
SecretLookup = Mapping[str, str | bytes] | Callable[[str], str | bytes | None]

DEFAULT_HEADER = "X-Taskit-Signature"
#: The default job type (task name) of a ``WebhookDelivery``.
JOB_TYPE = "taskit.webhook"


class WebhookError(Exception):
    """A delivery failed in a way worth retrying: the receiver answered 5xx."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body}")
        self.status = status
        self.body = body


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str) -> bool:
    """True if ``signature`` (a header value) signs ``body`` with ``secret``; constant-time."""
    return hmac.compare_digest(sign(secret, body), signature)


class WebhookDelivery(JobHandler):
    """The webhook delivery handler; register it with ``app.register(...)``.

    ``secrets``: a topic's signing secret (mapping or callable). ``header``: the signature
    header's name. ``request_timeout``: seconds for connecting and for each read. ``max_body``:
    characters of the response body kept in the result. ``job_type``: the task name, for an App
    that needs two differently configured deliveries.
    """

    def __init__(
        self,
        secrets: SecretLookup,
        *,
        header: str = DEFAULT_HEADER,
        request_timeout: float = 10.0,
        max_body: int = 1024,
        job_type: str = JOB_TYPE,
    ) -> None:
        if not (isinstance(secrets, Mapping) or callable(secrets)):
            raise TypeError("secrets must be a mapping or a callable topic -> secret")
        if not isinstance(header, str) or not header or any(c in header for c in ":\r\n "):
            raise ValueError(f"not a valid header name: {header!r}")
        if (
            isinstance(request_timeout, bool)
            or not isinstance(request_timeout, int | float)
            or not 0 < request_timeout <= MAX_SECONDS  # inf: the socket would refuse it
        ):
            raise ValueError(
                f"request_timeout must be seconds > 0, at most ten years, got {request_timeout!r}"
            )
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body must be an int >= 0 (characters), got {max_body!r}")
        if not isinstance(job_type, str) or not job_type.strip():
            raise ValueError(f"job_type must be a non-empty string, got {job_type!r}")
        self.job_type = job_type
        self._secrets = secrets
        self.header = header
        self.request_timeout = request_timeout
        self.max_body = max_body
        self._opener = urllib.request.build_opener(_NoRedirects)

    def validate_payload(self, payload: Mapping[str, Any]) -> None:
        """A delivery needs ``url`` (http or https), ``topic`` (a string) and ``payload``
        (anything JSON can encode); nothing else."""
        extra = set(payload) - {"url", "topic", "payload"}
        if extra:
            raise TypeError(f"unexpected webhook fields: {sorted(extra)}")
        url, topic = payload.get("url"), payload.get("topic")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be an http(s) URL, got {url!r}")
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"webhook topic must be a non-empty string, got {topic!r}")
        try:
            msgspec.json.encode(payload.get("payload"))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise ValueError(f"webhook payload is not JSON-encodable: {exc}") from exc

    def secret_for(self, topic: str) -> str | bytes | None:
        """The signing secret of ``topic``, or ``None``."""
        if isinstance(self._secrets, Mapping):
            return self._secrets.get(topic)
        return self._secrets(topic)

    async def handle(self, job: Job) -> JobResult:
        """POST the payload; see the module docstring for what each response does."""
        fields = job.kwargs
        try:  # again: a producer that does not know this handler (app.remote) checked nothing
            self.validate_payload(fields)
        except (TypeError, ValueError) as exc:
            return JobResult(success=False, error=exc)  # message, type and traceback
        url, topic = fields["url"], fields["topic"]
        secret = self.secret_for(topic)
        if not secret:
            return JobResult(
                success=False,
                error=f"no webhook secret for topic {topic!r}",
                error_type="ConfigurationError",
            )
        body = msgspec.json.encode(fields.get("payload"))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "taskit-webhooks",
            self.header: sign(secret, body),
            "X-Taskit-Topic": topic,
            "X-Taskit-Delivery": job.id,
            "X-Taskit-Attempt": str(job.attempts),
        }
        status, text = await anyio.to_thread.run_sync(
            self._post, url, body, headers, abandon_on_cancel=True
        )
        if status >= 500:
            raise WebhookError(status, text, url)
        value = {"status": status, "body": text}
        if 200 <= status < 300:
            return JobResult(success=True, value=value)
        return JobResult(
            success=False, value=value, error=f"HTTP {status} from {url}", error_type="HTTPError"
        )

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """Blocking POST; ``(status, truncated body)``. Network errors propagate (retried)."""
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.request_timeout) as response:
                return response.status, self._text(response.read(self.max_body * 4))
        except urllib.error.HTTPError as exc:  # a status outside 2xx: still an answer
            with exc:
                return exc.code, self._text(exc.read(self.max_body * 4) if exc.fp else b"")

    def _text(self, raw: bytes) -> str:
        return raw.decode("utf-8", errors="replace")[: self.max_body]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Report a 3xx instead of following it (a POST must not turn into a GET elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
