"""``taskit dashboard`` (refuses memory://, parses --basic-auth and its variable, serves the
app it built) and ``wsgi_dashboard`` (a page through WSGI)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result
from werkzeug.test import Client

from taskit import _cli_dashboard
from taskit.cli import main
from taskit.dashboard import wsgi_dashboard
from tests.dashboard._site import make_app


def taskit(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the command would have served (nothing is served)."""
    calls: list[Any] = []

    class Server:
        def __init__(self, config: Any, web: Any) -> None:
            calls.append((config, web))

        def run(self) -> None:
            calls.append("run")

    monkeypatch.setattr(_cli_dashboard, "_server", Server)
    return calls


def test_the_command_refuses_an_in_process_broker(served: list[Any]) -> None:
    result = taskit("dashboard", "tests.apps.memory_app:app")
    assert result.exit_code == 2
    assert "cannot work with the in-process memory:// broker" in result.output
    assert served == []


def test_the_command_serves_with_its_options(served: list[Any]) -> None:
    result = taskit(
        "dashboard", "tests.apps.workflow_app:app", "--port", "9123", "--host", "0.0.0.0",
        "--read-only", "--basic-auth", "ops:pa:ss",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "http://0.0.0.0:9123/" in result.output
    (config, web), run = served
    assert run == "run"
    assert (config.host, config.port) == ("0.0.0.0", 9123)
    assert web.state.dashboard.read_only is True
    guard = web.user_middleware[1]
    assert guard.kwargs["basic_auth"] == ("ops", "pa:ss")


def test_basic_auth_from_the_environment_and_bad_values(served: list[Any]) -> None:
    env = {"TASKIT_DASHBOARD_BASIC_AUTH": "me:pw"}
    assert taskit("dashboard", "tests.apps.workflow_app:app", env=env).exit_code == 0
    (_, web), _ = served
    assert web.user_middleware[1].kwargs["basic_auth"] == ("me", "pw")
    bad = taskit("dashboard", "tests.apps.workflow_app:app", "--basic-auth", "nocolon")
    assert bad.exit_code == 2
    assert "expected USER:PASSWORD" in bad.output


def test_the_wsgi_wrapper_serves_a_page() -> None:
    app = make_app()
    client = Client(wsgi_dashboard(app, basic_auth=("a", "b")))
    assert client.get("/queues").status_code == 401
    response = client.get("/queues", headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 200
    assert '<body data-page="queues"' in response.get_data(as_text=True)
    assert "server-timing" in response.headers
