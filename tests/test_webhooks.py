"""Webhook delivery against a real HTTP server on 127.0.0.1 (http.server in a thread): signature,
headers, retries on 5xx and network errors, no retry on 4xx, truncated bodies, secrets by topic.
Retries run through taskit.testing's drain(), so backoff costs no real time."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskit import App, Job, JobStatus, MemoryBroker, Settings
from taskit.testing import Harness
from taskit.webhooks import WebhookDelivery, sign, verify

pytestmark = pytest.mark.anyio

SECRET = "s3cret"


@dataclass
class Receiver:
    """What the server was sent, and what it answers: per path, a list of (status, body[,
    delay]) used in turn (the last one repeats)."""

    url: str
    plans: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def answer(self, path: str) -> tuple[Any, ...]:
        plan = self.plans.get(path, [(200, "ok")])
        return plan.pop(0) if len(plan) > 1 else plan[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((self.path, dict(self.headers.items()), body))
            status, text, *delay = state.answer(self.path)
            if delay:
                time.sleep(delay[0])
            data = text.encode()
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (the slow-receiver test)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make(max_retries: int = 3, **delivery: Any) -> tuple[App, Any]:
    app = App(MemoryBroker(), settings=Settings(backoff=30.0))
    delivery.setdefault("secrets", {"user.created": SECRET})
    task = app.register(WebhookDelivery(**delivery), max_retries=max_retries)
    return app, task


async def finished(app: App, job: Job) -> Job:
    with Harness(app) as harness:
        moved = await harness.broker.enqueue([job])  # the job as the producer made it
        await harness.drain()
        done = await harness.broker.get(moved[0].id)
    assert done is not None
    return done


async def test_a_delivery_is_signed_and_described_by_its_headers(receiver: Receiver) -> None:
    app, task = make(max_body=10)
    receiver.plans["/in"] = [(200, "accepted, thank you very much")]
    payload = {"user_id": 42, "email": "ada@example.com"}
    job = await finished(
        app, task.prepare(url=receiver.url + "/in", topic="user.created", payload=payload)
    )
    assert job.status is JobStatus.COMPLETED
    assert job.result is not None
    assert job.result.value == {"status": 200, "body": "accepted, "}
    [(path, headers, body)] = receiver.received
    assert path == "/in"
    assert json.loads(body) == payload
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Taskit-Signature"] == sign(SECRET, body)
    assert verify(SECRET, body, headers["X-Taskit-Signature"])
    assert not verify(SECRET, body + b" ", headers["X-Taskit-Signature"])
    assert not verify("other", body, headers["X-Taskit-Signature"])
    assert (headers["X-Taskit-Topic"], headers["X-Taskit-Delivery"]) == ("user.created", job.id)
    assert headers["X-Taskit-Attempt"] == "1"
    assert SECRET not in job.to_builtins().__repr__()  # the secret never travels with the job


async def test_5xx_is_retried_with_backoff_until_it_succeeds(receiver: Receiver) -> None:
    app, task = make()
    receiver.plans["/flaky"] = [(503, "busy"), (500, "oops"), (204, "")]
    job = await finished(app, task.prepare(url=receiver.url + "/flaky", topic="user.created"))
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 3)
    assert job.result is not None
    assert job.result.value == {"status": 204, "body": ""}
    attempts = [h["X-Taskit-Attempt"] for _, h, _ in receiver.received]
    assert attempts == ["1", "2", "3"]
    assert len({h["X-Taskit-Delivery"] for _, h, _ in receiver.received}) == 1
    assert job.error is not None
    assert job.error.startswith("HTTP 500 from")  # the last failure is kept


async def test_5xx_until_retries_are_spent_dead_letters_with_code_and_body(
    receiver: Receiver,
) -> None:
    app, task = make(max_retries=2, max_body=20)
    receiver.plans["/down"] = [(502, "bad gateway " + "x" * 500)]
    job = await finished(app, task.prepare(url=receiver.url + "/down", topic="user.created"))
    assert (job.status, job.attempts, job.error_type) == (JobStatus.DEAD_LETTER, 3, "WebhookError")
    assert job.error == f"HTTP 502 from {receiver.url}/down: bad gateway xxxxxxxx"
    assert len(receiver.received) == 3


@pytest.mark.parametrize(("status", "body"), [(400, "bad request"), (410, "gone"), (302, "")])
async def test_4xx_and_3xx_fail_at_once_without_retry(
    receiver: Receiver, status: int, body: str
) -> None:
    app, task = make()
    receiver.plans["/no"] = [(status, body)]
    job = await finished(app, task.prepare(url=receiver.url + "/no", topic="user.created"))
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.result is not None
    assert job.result.value == {"status": status, "body": body}
    assert job.result.error == f"HTTP {status} from {receiver.url}/no"
    assert [p for p, _, _ in receiver.received] == ["/no"]  # a redirect was not followed


async def test_network_errors_are_retried() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app, task = make(max_retries=2)
    job = await finished(app, task.prepare(url=f"http://127.0.0.1:{port}/", topic="user.created"))
    assert (job.status, job.attempts, job.error_type) == (JobStatus.DEAD_LETTER, 3, "URLError")


async def test_a_slow_receiver_times_out_and_is_retried(receiver: Receiver) -> None:
    app, task = make(max_retries=1, request_timeout=0.1)
    receiver.plans["/slow"] = [(200, "late", 0.4), (200, "fast")]
    job = await finished(app, task.prepare(url=receiver.url + "/slow", topic="user.created"))
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert job.error_type is not None
    assert "Timeout" in job.error_type or "timed out" in (job.error or "")


async def test_secret_by_callable_custom_header_and_missing_secret(receiver: Receiver) -> None:
    asked: list[str] = []

    def lookup(topic: str) -> bytes | None:
        asked.append(topic)
        return b"key-" + topic.encode() if topic.startswith("order.") else None

    app, task = make(secrets=lookup, header="X-Hub-Signature-256")
    paid = await finished(
        app, task.prepare(url=receiver.url + "/p", topic="order.paid", payload=[1, 2])
    )
    assert paid.status is JobStatus.COMPLETED
    [(_, headers, body)] = receiver.received
    assert body == b"[1,2]"
    assert headers["X-Hub-Signature-256"] == sign(b"key-order.paid", body)
    assert "X-Taskit-Signature" not in headers
    unknown = await finished(app, task.prepare(url=receiver.url + "/p", topic="user.deleted"))
    assert (unknown.status, unknown.error_type) == (JobStatus.FAILED, "ConfigurationError")
    assert len(receiver.received) == 1  # nothing was sent without a secret
    assert asked == ["order.paid", "user.deleted"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"url": "ftp://example.com/", "topic": "t"}, "http"),
        ({"url": "http://", "topic": "t"}, "http"),
        ({"url": "http://example.com/", "topic": ""}, "topic"),
        ({"url": "http://example.com/", "topic": "t", "secret": "x"}, "unexpected"),
    ],
)
def test_bad_deliveries_are_refused_at_enqueue(fields: dict[str, Any], match: str) -> None:
    _, task = make()
    with pytest.raises((TypeError, ValueError), match=match):
        task.prepare(**fields)


async def test_a_bad_delivery_from_a_producer_that_checked_nothing_fails_without_retry() -> None:
    app, _ = make()
    producer = App(app.broker, settings=app.settings)
    job = producer.remote("taskit.webhook").prepare(url="gopher://x", topic="t")
    done = await finished(app, job)
    assert (done.status, done.attempts) == (JobStatus.FAILED, 1)


def test_delivery_options_are_checked() -> None:
    with pytest.raises(TypeError, match="secrets"):
        WebhookDelivery(secrets="s3cret")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header"):
        WebhookDelivery(secrets={}, header="X-Bad: header")
    with pytest.raises(ValueError, match="request_timeout"):
        WebhookDelivery(secrets={}, request_timeout=0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"request_timeout": math.inf}, "request_timeout"),  # the socket refused it at delivery
        ({"request_timeout": 1e300}, "request_timeout"),
        ({"request_timeout": "5"}, "request_timeout"),  # was a TypeError about '>'
        ({"request_timeout": True}, "request_timeout"),
        ({"max_body": -1}, "max_body"),
        ({"max_body": "x"}, "max_body"),
        ({"max_body": 1.5}, "max_body"),
        ({"job_type": ""}, "job_type"),
        ({"job_type": 5}, "job_type"),
        ({"header": 5}, "header"),
    ],
)
def test_a_bad_delivery_option_is_refused_naming_it(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        WebhookDelivery({"t": "secret"}, **options)
