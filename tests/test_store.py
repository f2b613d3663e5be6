"""The store: migrations agree with the tables, views answer, timestamps stay UTC."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from mlfactory.settings import Settings
from mlfactory.store import Base, DataLoad, Item, PipelineRun, get_engine


def test_migrations_create_exactly_the_declared_schema(settings: Settings) -> None:
    engine = get_engine(settings.database_url)
    with engine.connect() as connection, warnings.catch_warnings():
        # The PostgreSQL-only expression index: Alembic cannot reflect expression indexes from
        # SQLite, so it leaves it out there (the PostgreSQL variant compares it).
        warnings.filterwarnings(
            "ignore", "autogenerate skipping .* index 'ix_items_arxiv_published'; dialect 'sqlite'"
        )
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert {"current_data_state", "class_distribution"} <= set(inspect(engine).get_view_names())
    indexes = {index["name"] for index in inspect(engine).get_indexes("items")}
    assert ("ix_items_arxiv_published" in indexes) == (engine.dialect.name == "postgresql")


def test_views_summarise_items_per_data_set(settings: Settings, sessions) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        batch = DataLoad(dataset="d", name="initial", mode="full", status="completed")
        session.add(batch)
        session.flush()
        for key, label in [("1", "a"), ("2", "a"), ("3", "b"), ("4", None)]:
            session.add(
                Item(
                    dataset="d",
                    key=key,
                    data={},
                    label=label,
                    content_hash=key,
                    first_batch_id=batch.id,
                    last_batch_id=batch.id,
                    updated_at=now,
                )
            )
    with sessions() as session:
        state = session.execute(
            text("SELECT items, labelled, last_batch_id FROM current_data_state")
        )
        assert state.one() == (4, 3, batch.id)
        counts = session.execute(
            text("SELECT label, items FROM class_distribution WHERE dataset='d'")
        )
        assert dict(counts.all()) == {"a": 2, "b": 1, None: 1}


def test_timestamps_come_back_as_utc(settings: Settings, sessions) -> None:
    paris = timezone(timedelta(hours=1))
    started = datetime(2026, 1, 2, 13, 0, tzinfo=paris)
    with sessions.begin() as session:
        session.add(PipelineRun(pipeline="p", status="running", engine="local", started_at=started))
    with sessions() as session:
        stored = session.scalar(select(PipelineRun.started_at))
    assert stored == started
    assert stored.utcoffset() == timedelta(0)


def test_upgrading_an_older_store_keeps_its_rows(store_url: str) -> None:
    from alembic import command

    from mlfactory.store.engine import MIGRATIONS_DIR, _alembic_config, _create_engine, migrate

    engine = _create_engine(store_url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO snapshots (dataset, digest, row_count, class_counts, created_at) "
                "VALUES ('d', 'abc', 3, '{}', CURRENT_TIMESTAMP)"
            )
        )
    migrate(engine)
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
        row = connection.execute(text("SELECT digest, kind FROM snapshots")).one()
    assert tuple(row) == ("abc", "training")
    migrate(engine)  # at head already: nothing to do, nothing changes
    engine.dispose()
