"""The audit trail on SQLite and PostgreSQL: entries recorded with the change they describe,
listed newest first, and never rewritten (the database itself rejects UPDATE and DELETE)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.settings import Settings
from mlfactory.store import audit
from mlfactory.store.engine import _alembic_config, _create_engine, migrate
from mlfactory.store.tables import AuditLog


def fill(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        audit.record(session, "alice", "login", "user:alice")
        audit.record(
            session,
            "alice",
            "alias.set",
            "model:advertising-clicks@champion",
            before={"version": "4"},
            after={"version": "5"},
            detail="f1 0.90 -> 0.93",
        )
    with sessions.begin() as session:
        audit.record(session, "bob", "run.trigger", "pipeline:advertising", after={"run_id": 7})
        audit.record(session, "alice", "model.reload", "model:advertising-clicks")


def test_entries_are_recorded_and_listed_newest_first(settings: Settings, sessions) -> None:
    before = datetime.now(UTC)
    fill(sessions)

    with sessions() as session:
        total, entries = audit.list_entries(session)
    assert total == 4
    assert [e.action for e in entries] == ["model.reload", "run.trigger", "alias.set", "login"]
    promoted = entries[2]
    assert (promoted.actor, promoted.target) == ("alice", "model:advertising-clicks@champion")
    assert (promoted.before, promoted.after) == ({"version": "4"}, {"version": "5"})
    assert promoted.detail == "f1 0.90 -> 0.93"
    assert all(before <= e.at <= datetime.now(UTC) for e in entries)

    with sessions() as session:
        total, page = audit.list_entries(session, limit=2, offset=1)
        assert (total, [e.action for e in page]) == (4, ["run.trigger", "alias.set"])
        total, alices = audit.list_entries(session, actor="alice")
        assert (total, [e.action for e in alices]) == (3, ["model.reload", "alias.set", "login"])
        total, by_target = audit.list_entries(session, target="pipeline:advertising")
        assert (total, [e.actor for e in by_target]) == (1, ["bob"])
        assert audit.list_entries(session, action="alias.set")[0] == 1


def test_an_entry_commits_or_rolls_back_with_its_change(settings: Settings, sessions) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session:
        audit.record(session, "bob", "alias.set", "model:m@champion", after={"version": "9"})
        raise RuntimeError("the alias change failed")

    with sessions() as session:
        assert audit.list_entries(session) == (0, [])


@pytest.mark.parametrize(
    "change",
    [
        update(AuditLog).values(actor="mallory"),
        delete(AuditLog),
        text("UPDATE audit_log SET detail = 'rewritten'"),
        text("DELETE FROM audit_log WHERE action = 'login'"),
    ],
    ids=["orm-update", "orm-delete", "sql-update", "sql-delete"],
)
def test_the_database_rejects_rewriting_the_trail(settings: Settings, sessions, change) -> None:
    fill(sessions)

    with pytest.raises(DBAPIError, match="audit_log is append-only"), sessions.begin() as session:
        session.execute(change)

    with sessions() as session:
        total, entries = audit.list_entries(session)
    assert total == 4
    assert {e.actor for e in entries} == {"alice", "bob"}
    assert all(e.detail != "rewritten" for e in entries)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # SQLite has no TRUNCATE
def test_postgresql_rejects_truncate_too(settings: Settings, sessions) -> None:
    fill(sessions)

    with pytest.raises(DBAPIError, match="audit_log is append-only"), sessions.begin() as session:
        session.execute(text("TRUNCATE audit_log"))

    with sessions() as session:
        assert session.scalar(select(AuditLog.id).limit(1)) is not None


def test_bad_entries_are_refused_with_a_clear_error(settings: Settings, sessions) -> None:
    with sessions.begin() as session:
        with pytest.raises(ValueError, match="bad audit action 'Alias Set'"):
            audit.record(session, "alice", "Alias Set", "model:m")
        with pytest.raises(ValueError, match="non-empty actor"):
            audit.record(session, " ", "login", "user:x")
        with pytest.raises(ValueError, match="audit before is not JSON-serialisable"):
            audit.record(session, "alice", "alias.set", "model:m", before={"at": datetime.now()})
        with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
            audit.list_entries(session, limit=0)
    with sessions() as session:
        assert audit.list_entries(session)[0] == 0


def test_migration_0003_downgrades_and_upgrades_again(store_url: str) -> None:
    engine = _create_engine(store_url)
    migrate(engine)
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0002")
    assert not {"audit_log", "notifications"} & set(inspect(engine).get_table_names())

    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, target) "
                "VALUES (CURRENT_TIMESTAMP, 'cli', 'login', 'user:cli')"
            )
        )
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))
    engine.dispose()
