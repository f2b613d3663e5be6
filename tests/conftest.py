"""Shared fixtures: real stores on SQLite and PostgreSQL, real data sets, isolated settings.

Tests that take ``store_url`` run once per backend. PostgreSQL gets a throwaway database per
test on ``MLF_TEST_POSTGRES_URL`` (default: the local server); when it cannot be reached the
PostgreSQL variant is skipped, unless ``MLF_REQUIRE_SERVICES=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api_process import process_env
from mail_server import Inbox, smtp_servers
from mlfactory.settings import Settings
from mlfactory.store import dispose_engines, session_factory
from tls import self_signed

REPO = Path(__file__).resolve().parents[1]
REQUIRE_SERVICES = os.environ.get("MLF_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get(
    "MLF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def service_missing(what: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (MLF_REQUIRE_SERVICES=1)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    path = Path(os.environ.get("MLF_DATASETS_DIR", REPO.parent / "shared" / "datasets"))
    if not (path / "advertising" / "advertising.csv").is_file():
        service_missing(f"no data sets at {path}: set MLF_DATASETS_DIR")
    return path


@pytest.fixture(scope="session")
def advertising_csv(datasets_dir: Path) -> Path:
    return datasets_dir / "advertising" / "advertising.csv"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        dispose_engines()
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"mlf_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        service_missing(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc.orig}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the session (creating one costs seconds); tests that read the
    registry use their own model name (see ``model_name``)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def model_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(store_url: str, tmp_path: Path, datasets_dir: Path, mlflow_uri: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=store_url,
        mlflow_tracking_uri=mlflow_uri,
        datasets_dir=datasets_dir,
    )


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    return session_factory(settings.database_url)


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``mlfactory`` subprocess that uses this test's settings."""
    return process_env(settings)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[int, Inbox]]]:
    """Start a local SMTP server (aiosmtpd) with the given options: ``(port, inbox)``."""
    yield from smtp_servers()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 and a server's TLS context using it."""
    return self_signed(tmp_path)
