"""The API's front door on a real store: every protected route rejects bad callers, login issues
the right tokens, limits answer 429/413, and every error is a problem-details document.

The route audit reads the routes of ``create_app(settings)`` itself, so a route added tomorrow is
audited tomorrow: one that is neither public nor guarded by a ``require_<role>`` dependency fails
``test_every_route_is_public_or_requires_a_role``.
"""

from __future__ import annotations

import logging
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import ROLES, add_user, disable_user
from mlfactory.api.deps import Admin, Viewer, current_user
from mlfactory.api.main import PUBLIC_PATHS, create_app
from mlfactory.api.security import ConfigurationError, _local_key, create_token, decode_token
from mlfactory.settings import Settings

PASSWORD = "correct horse battery"
PROBLEM = "application/problem+json"
ROLE_DEPENDENCY = re.compile(r"require_(viewer|user|admin)")
# Well-formed values that name nothing: auth must answer before any lookup, and a caller with the
# right role then gets a 404 or 422 from the route instead of starting anything.
PATH_SAMPLES = {int: "999999", float: "0.5"}
PATH_DEFAULT = "audit-probe"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    role: str | None  # the strongest role its dependencies require; None: no role at all
    route: Any

    def url(self) -> str:
        values = {
            param.name: PATH_SAMPLES.get(param.field_info.annotation, PATH_DEFAULT)
            for param in self.route.dependant.path_params
        }
        return self.path.format(**values)


def effective_routes(app: FastAPI) -> list[Any]:
    """Every route with its full path and dependencies.

    FastAPI 0.137 keeps included routers as a tree in ``app.routes`` and offers
    ``iter_route_contexts`` (0.137.2) to flatten it; before, ``app.routes`` is flat.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def is_api_route(route: Any) -> bool:
    return isinstance(getattr(route, "original_route", route), APIRoute)


def required_role(route: Any) -> str | None:
    def calls(dependant: Any) -> Iterator[Any]:
        for sub in dependant.dependencies:
            yield sub.call
            yield from calls(sub)

    roles = [
        match[1]
        for call in calls(route.dependant)
        if (match := ROLE_DEPENDENCY.fullmatch(getattr(call, "__name__", "")))
    ]
    return max(roles, key=ROLES.index) if roles else None


def unaudited(app: FastAPI) -> list[str]:
    """Routes that are not public and that the audit cannot see guarded by a role."""
    problems = []
    for route in effective_routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        if not is_api_route(route):
            problems.append(f"{route.path}: not an APIRoute, so no role dependency can guard it")
        elif required_role(route) is None:
            problems.append(f"{sorted(route.methods)} {route.path}: no require_<role> dependency")
    return problems


def protected_endpoints(app: FastAPI) -> list[Endpoint]:
    return [
        Endpoint(method, route.path, required_role(route), route)
        for route in effective_routes(app)
        if route.path not in PUBLIC_PATHS and is_api_route(route)
        for method in sorted(route.methods)
    ]


@dataclass
class Api:
    app: FastAPI
    client: TestClient

    def bearer(
        self, username: str, lifetime: timedelta = timedelta(minutes=5), key: str = ""
    ) -> dict[str, str]:
        role = username if username in ROLES else "admin"
        token, _ = create_token(username, role, key or self.app.state.signing_key, lifetime)
        return {"Authorization": f"Bearer {token}"}


def add_role_users(sessions: sessionmaker[Session]) -> None:
    """One enabled user per role, named after it, and ``gone``, a disabled admin."""
    for role in ROLES:
        add_user(sessions, role, PASSWORD, role)
    add_user(sessions, "gone", PASSWORD, "admin")
    disable_user(sessions, "gone")


class Probe(BaseModel):
    size: int


def probe_router() -> APIRouter:
    """Routes that exercise the harness whatever the real routes are (path, body, failure)."""
    router = APIRouter(prefix="/probe")

    @router.get("/viewer")
    def viewer(account: Viewer) -> dict[str, str]:
        return {"username": account.username}

    @router.post("/admin/{item_id}")
    def admin(item_id: int, probe: Probe, account: Admin) -> dict[str, int]:
        return {"item_id": item_id, "size": probe.size}

    @router.get("/boom")
    def boom(account: Viewer) -> None:
        raise RuntimeError("secret-internal-detail")

    return router


@pytest.fixture
def api(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Api]:
    add_role_users(sessions)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client.app, client)  # type: ignore[arg-type]


@pytest.fixture
def probed(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Api]:
    add_role_users(sessions)
    app = create_app(
        settings.model_copy(update={"api_rate_per_minute": 5, "api_max_body_bytes": 200})
    )
    app.include_router(probe_router())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(app, client)


def rejections(api: Api, endpoint: Endpoint) -> list[str]:
    """What ``endpoint`` did wrong with bad callers (and with a good one); empty when right."""
    cases: list[tuple[str, dict[str, str], int]] = [
        ("no token", {}, 401),
        ("a malformed token", {"Authorization": "Bearer not-a-jwt"}, 401),
        ("a forged signature", api.bearer("admin", key="x" * 48), 401),
        ("an expired token", api.bearer("admin", lifetime=timedelta(minutes=-1)), 401),
        ("a disabled user's token", api.bearer("gone"), 401),
    ]
    assert endpoint.role is not None
    rank = ROLES.index(endpoint.role)
    if rank > 0:
        cases.append((f"role {ROLES[rank - 1]}", api.bearer(ROLES[rank - 1]), 403))
    failures = []
    url = endpoint.url()
    for case, headers, expected in cases:
        response = api.client.request(endpoint.method, url, headers=headers)
        if response.status_code != expected:
            failures.append(
                f"{endpoint.method} {url} with {case}: {response.status_code}, not {expected}"
            )
        elif response.headers["content-type"] != PROBLEM:
            failures.append(f"{endpoint.method} {url} with {case}: not problem details")
        elif expected == 401 and not response.headers.get("www-authenticate", "").startswith(
            "Bearer"
        ):
            failures.append(f"{endpoint.method} {url} with {case}: no Bearer challenge")
    # The required role itself gets past auth (to a 404 or 422 about the sample values): the
    # role the audit derived is the route's real one. A JSON body of the wrong type keeps a
    # route that takes a body from doing anything.
    accepted = api.client.request(
        endpoint.method, url, headers=api.bearer(endpoint.role), json="not a body"
    )
    if accepted.status_code in (401, 403):
        failures.append(
            f"{endpoint.method} {url} refused its own role {endpoint.role}: {accepted.status_code}"
        )
    return failures


def test_every_route_is_public_or_requires_a_role(api: Api) -> None:
    assert unaudited(api.app) == []


def test_every_protected_route_rejects_bad_callers(api: Api) -> None:
    endpoints = protected_endpoints(api.app)
    failures = [failure for endpoint in endpoints for failure in rejections(api, endpoint)]
    assert failures == [], f"{len(failures)} failures over {len(endpoints)} endpoints"


def test_the_audit_sees_unguarded_routes(api: Api) -> None:
    @api.app.get("/v1/forgotten")
    def forgotten(account: Annotated[Any, Depends(current_user)]) -> None:
        """Authenticated but with no role: must not pass the audit."""

    assert unaudited(api.app) == ["['GET'] /v1/forgotten: no require_<role> dependency"]


def test_the_audit_handles_path_parameters_bodies_and_roles(probed: Api) -> None:
    endpoints = {(e.method, e.path): e for e in protected_endpoints(probed.app)}
    admin = endpoints["POST", "/probe/admin/{item_id}"]
    assert (admin.role, admin.url()) == ("admin", "/probe/admin/999999")
    assert rejections(probed, admin) == []
    assert rejections(probed, endpoints["GET", "/probe/viewer"]) == []


def test_public_routes_need_no_token(api: Api) -> None:
    for path in ("/health", "/openapi.json", "/docs", "/redoc"):
        assert api.client.get(path).status_code == 200, path
    assert api.client.get("/health").json()["status"] == "ok"


def test_login_issues_a_token_with_the_right_claims(api: Api, settings: Settings) -> None:
    before = datetime.now(UTC)
    response = api.client.post("/token", data={"username": "user", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.jwt_lifetime_minutes * 60
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    claims = decode_token(body["access_token"], api.app.state.signing_key)
    assert (claims.username, claims.role) == ("user", "user")
    lifetime = timedelta(minutes=settings.jwt_lifetime_minutes)
    assert (
        before + lifetime - timedelta(seconds=5)
        <= claims.expires_at
        <= datetime.now(UTC) + lifetime
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [("user", "wrong password"), ("nobody", PASSWORD), ("gone", PASSWORD)],
    ids=["wrong password", "unknown user", "disabled user"],
)
def test_login_refusals_are_one_401_problem(api: Api, username: str, password: str) -> None:
    response = api.client.post("/token", data={"username": username, "password": password})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "wrong user name or password",
        "instance": "/token",
    }


def test_a_token_opens_the_routes_of_its_role(probed: Api) -> None:
    login = probed.client.post("/token", data={"username": "viewer", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert probed.client.get("/probe/viewer", headers=headers).json() == {"username": "viewer"}
    denied = probed.client.post("/probe/admin/1", headers=headers, json={"size": 1})
    assert denied.status_code == 403
    assert denied.json()["detail"] == "role 'viewer' may not do this; needs 'admin'"


def test_the_rate_limit_answers_429_with_retry_after_per_user(probed: Api) -> None:
    viewer = probed.bearer("viewer")
    codes = [probed.client.get("/probe/viewer", headers=viewer).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    refused = probed.client.get("/probe/viewer", headers=viewer)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "more than 5 requests in a minute" in refused.json()["detail"]
    assert probed.client.get("/probe/viewer", headers=probed.bearer("admin")).status_code == 200


def test_failed_logins_slow_their_address_down_and_never_lock_the_owner_out(
    probed: Api,
) -> None:
    admin = probed.bearer("admin")  # a token issued before the attack
    guess = {"username": "admin", "password": "guess-guess"}
    codes = [probed.client.post("/token", data=guess).status_code for _ in range(6)]
    assert codes == [401] * 6  # five free failures, the sixth allowed and then 1 s to wait
    slowed = probed.client.post("/token", data=guess)
    assert slowed.status_code == 429 and slowed.headers["retry-after"] == "1"
    assert "too many failed logins for this name from this address" in slowed.json()["detail"]
    time.sleep(1.1)
    assert probed.client.post("/token", data=guess).status_code == 401
    again = probed.client.post("/token", data=guess)
    assert again.status_code == 429 and again.headers["retry-after"] == "2"  # growing

    assert probed.client.get("/probe/viewer", headers=admin).status_code == 200
    with TestClient(probed.app, client=("198.51.100.7", 4000)) as elsewhere:
        owner = elsewhere.post("/token", data={"username": "admin", "password": PASSWORD})
    assert owner.status_code == 200  # the owner, from their own address


def test_one_address_may_try_only_so_many_logins_a_minute(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    add_role_users(sessions)
    app = create_app(settings.model_copy(update={"api_login_per_minute": 10}))
    with TestClient(app) as client:
        codes = [
            client.post("/token", data={"username": f"name-{n}", "password": "x"}).status_code
            for n in range(11)
        ]
        assert codes == [401] * 10 + [429]
    with TestClient(app, client=("198.51.100.8", 4000)) as other:
        login = other.post("/token", data={"username": "viewer", "password": PASSWORD})
    assert login.status_code == 200


def test_errors_are_problem_details_everywhere(probed: Api) -> None:
    admin = probed.bearer("admin")
    not_found = probed.client.get("/no/such/route")
    assert (not_found.status_code, not_found.headers["content-type"]) == (404, PROBLEM)
    assert not_found.json()["title"] == "Not Found"

    not_allowed = probed.client.delete("/health")
    assert (not_allowed.status_code, not_allowed.headers["content-type"]) == (405, PROBLEM)
    assert "GET" in not_allowed.headers["allow"]

    invalid = probed.client.post("/probe/admin/1", headers=admin, json={"size": "big"})
    assert (invalid.status_code, invalid.headers["content-type"]) == (422, PROBLEM)
    assert [error["loc"] for error in invalid.json()["errors"]] == [["body", "size"]]

    crash = probed.client.get("/probe/boom", headers=admin)
    assert (crash.status_code, crash.headers["content-type"]) == (500, PROBLEM)
    assert crash.json()["detail"] == "internal server error"
    assert "secret-internal-detail" not in crash.text and "Traceback" not in crash.text


def test_bodies_over_the_limit_get_413_declared_or_streamed(probed: Api) -> None:
    admin = probed.bearer("admin")
    small = probed.client.post("/probe/admin/1", headers=admin, json={"size": 1})
    assert small.status_code == 200
    declared = probed.client.post(
        "/probe/admin/1", headers=admin, content=b'{"size": 1}' + b" " * 300
    )
    assert (declared.status_code, declared.headers["content-type"]) == (413, PROBLEM)
    chunks = iter([b'{"size": 1', b" " * 150, b" " * 150, b"}"])  # no Content-Length: chunked
    streamed = probed.client.post(
        "/probe/admin/1", headers={**admin, "content-type": "application/json"}, content=chunks
    )
    assert (streamed.status_code, streamed.headers["content-type"]) == (413, PROBLEM)


def test_the_local_key_is_private_generated_once_and_kept(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home")
    first, second = create_app(settings), create_app(settings)
    path = settings.home / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.state.signing_key == second.state.signing_key == path.read_text().strip()
    assert len(first.state.signing_key) >= 32
    token, _ = create_token("ann", "viewer", first.state.signing_key, timedelta(minutes=1))
    assert decode_token(token, second.state.signing_key).username == "ann"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".jwt_secret")] == []


def test_processes_starting_together_agree_on_one_key(tmp_path) -> None:
    path = tmp_path / "home" / "jwt_secret"
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(_local_key(path))) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 16 and len(set(keys)) == 1 and keys[0] == path.read_text().strip()


def test_production_refuses_to_start_without_a_secret(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="MLF_JWT_SECRET must be set"):
        create_app(Settings(home=tmp_path, env="production"))
    assert not (tmp_path / "jwt_secret").exists()
    with pytest.raises(ConfigurationError, match="shorter than 32"):
        create_app(Settings(home=tmp_path, env="production", jwt_secret=SecretStr("short")))
    secret = "s" * 40
    app = create_app(Settings(home=tmp_path, env="production", jwt_secret=SecretStr(secret)))
    assert app.state.signing_key == secret


def test_secrets_never_reach_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    login = api.client.post("/token", data={"username": "admin", "password": PASSWORD})
    token = login.json()["access_token"]
    api.client.get("/no/such/route", headers={"Authorization": f"Bearer {token}"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (api.app.state.signing_key, PASSWORD, token):
        assert secret not in logged
