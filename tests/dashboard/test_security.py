"""Auth (basic and the hook), CSRF on every action, read-only mode, and the arguments of
``dashboard``."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from taskit.dashboard import dashboard
from tests.dashboard._site import Site, make_app


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_pages_assets_and_actions() -> None:
    with Site(basic_auth=("admin", "s3cret")) as site:
        for path in ("/", "/jobs", "/static/dashboard.js", "/api/live"):
            response = site.client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Basic realm="taskit"'
        assert site.client.get("/", headers=basic("admin", "wrong")).status_code == 401
        assert site.client.get("/", headers=basic("root", "s3cret")).status_code == 401
        assert site.client.get("/", headers={"Authorization": "Basic !!"}).status_code == 401
        site.client.headers.update(basic("admin", "s3cret"))
        assert site.client.get("/queues").status_code == 200
        assert site.post("/actions/queues/default/pause").json()["ok"] is True


def test_the_auth_hook_refuses_with_403_sync_or_async() -> None:
    def sync_hook(request: Request) -> bool:
        return request.headers.get("x-user") == "ops"

    async def async_hook(request: Request) -> bool:
        return request.headers.get("x-user") == "ops"

    for hook in (sync_hook, async_hook):
        with Site(auth=hook) as site:
            assert site.client.get("/").status_code == 403
            assert site.client.get("/static/dashboard.css").status_code == 403
            assert site.client.get("/", headers={"x-user": "ops"}).status_code == 200


def test_basic_auth_and_the_hook_both_must_pass() -> None:
    with Site(basic_auth=("a", "b"), auth=lambda request: "x-ok" in request.headers) as site:
        assert site.client.get("/", headers={"x-ok": "1"}).status_code == 401
        assert site.client.get("/", headers=basic("a", "b")).status_code == 403
        assert site.client.get("/", headers={**basic("a", "b"), "x-ok": "1"}).status_code == 200


def test_csrf_missing_wrong_foreign_or_cross_origin_is_refused() -> None:
    with Site() as site:
        url = "/actions/queues/default/pause"
        site.token()  # the browser has its cookie now
        missing = site.client.post(url, json={})
        assert (missing.status_code, missing.json()["ok"]) == (403, False)
        wrong = site.client.post(url, json={}, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        cross = site.post(url, Origin="https://evil.example")
        assert (cross.status_code, cross.json()["error"]) == (403, "cross-origin request refused")
        fetched = site.post(url, **{"Sec-Fetch-Site": "cross-site"})
        assert fetched.status_code == 403
        assert site.run(site.broker.paused_queues) == set()
        token = site.token()
        with Site() as other:  # another browser (cookie) with this one's token
            other.token()
            stolen = other.client.post(url, json={}, headers={"X-CSRF-Token": token})
            assert stolen.status_code == 403
        same = site.post(url, Origin="http://dash.test")
        assert same.json() == {"ok": True, "message": "queue default paused"}
        proxied = {"Origin": "https://ops.example", "X-Forwarded-Host": "ops.example"}
        assert site.post("/actions/queues/default/resume", **proxied).json()["ok"] is True


def test_the_cookie_is_strict_and_the_token_is_stable_per_browser() -> None:
    with Site() as site:
        first = site.client.get("/")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("taskit_csrf=")
        assert "samesite=strict" in cookie.lower()
        assert "httponly" in cookie.lower()
        assert site.token() == site.token()
        assert "set-cookie" not in site.client.get("/").headers


def test_read_only_refuses_every_action_and_shows_no_button() -> None:
    with Site(read_only=True) as site:
        job = site.dead(1, 2)
        for url in (
            "/actions/queues/default/pause",
            f"/actions/jobs/{job.id}/requeue",
            "/actions/dead/default/delete",
        ):
            response = site.post(url, {"all": True})
            assert response.status_code == 403
            assert response.json() == {"ok": False, "error": "this dashboard is read-only"}
        for page in ("/queues", f"/jobs/{job.id}", "/dead"):
            html = site.client.get(page).text
            assert "data-action=" not in html, page
            assert "data-select=" not in html, page
        assert site.run(site.broker.stats)["default"].dead == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"basic_auth": ("admin", "")}, ValueError),
        ({"basic_auth": "admin:pw"}, ValueError),
        ({"secret": "short"}, ValueError),
        ({"auth": "yes"}, TypeError),
    ],
)
def test_bad_arguments_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        dashboard(make_app(), **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="taskit App"):
        dashboard(object())  # type: ignore[arg-type]


def test_a_given_secret_makes_tokens_valid_across_processes() -> None:
    with Site(secret="k" * 32) as one, Site(secret="k" * 32) as two:
        token = one.token()
        cookie = one.client.cookies["taskit_csrf"]
        two.client.cookies.set("taskit_csrf", cookie)
        reply = two.client.post(
            "/actions/queues/default/pause", json={}, headers={"X-CSRF-Token": token}
        )
        assert reply.json()["ok"] is True
