"""The store's tables: run records, audited data items and everything derived from them.

Schema changes go through an Alembic migration in ``migrations/versions``; a test checks that
the migrations and these classes agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite (which keeps no
    zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {
        dict[str, Any]: JsonType,
        list[Any]: JsonType,
        datetime: UTCDateTime(),
    }


class PipelineRun(Base):
    """One run of a pipeline, whichever engine ran it."""

    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))  # running | success | failed
    engine: Mapped[str] = mapped_column(String(20))  # local | airflow
    external_id: Mapped[str | None] = mapped_column(String(250), unique=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TaskRun(Base):
    """One attempt of one step of a pipeline run."""

    __tablename__ = "task_runs"
    __table_args__ = (Index("ix_task_runs_run_step", "run_id", "step", "attempt", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))  # running | success | failed | upstream_failed
    engine: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    output: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)


class DataLoad(Base):
    """One load batch of a data set, with its counts and outcome."""

    __tablename__ = "data_loads"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))  # full | fraction | watermark
    percentage: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # running | completed | failed
    rows_seen: Mapped[int] = mapped_column(default=0)
    rows_inserted: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_unchanged: Mapped[int] = mapped_column(default=0)
    rows_rejected: Mapped[int] = mapped_column(default=0)
    rows_deleted: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Item(Base):
    """The current state of one source row of a data set."""

    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_dataset_key", "dataset", "key", unique=True),
        # A data set's items in id order, from any id on: the pages of work selection (batch
        # prediction, summaries) read a range of it instead of sorting the whole data set.
        Index("ix_items_dataset_id", "dataset", "id"),
        # The article list (``api/article_queries.py``) pages the arXiv papers by
        # ``CAST(data ->> 'published' AS VARCHAR) DESC NULLS LAST, id DESC``: this index holds
        # that order for the ``arxiv`` rows (migration 0005). The expression is written as
        # PostgreSQL reports it back (the same cast), the form Alembic's comparison recognises.
        # PostgreSQL only: SQLite plans the query with its JSON path and data set as bound
        # parameters, which no index expression or partial index matches.
        Index(
            "ix_items_arxiv_published",
            text("((data ->> 'published')::varchar) DESC NULLS LAST"),
            text("id DESC"),
            postgresql_where=text("dataset = 'arxiv'"),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]]
    label: Mapped[str | None] = mapped_column(String(200), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    first_batch_id: Mapped[int] = mapped_column(ForeignKey("data_loads.id"))
    last_batch_id: Mapped[int] = mapped_column(ForeignKey("data_loads.id"))
    deleted_batch_id: Mapped[int | None] = mapped_column(ForeignKey("data_loads.id"))
    """The batch that deleted the item (a replace whose source no longer has its key); a
    deleted item keeps its row and history, and is no longer part of its data set."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemHistory(Base):
    """Every insert, update and delete of an item, with the batch that made it."""

    __tablename__ = "item_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("data_loads.id"), index=True)
    operation: Mapped[str] = mapped_column(String(10))  # insert | update | delete
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rejection(Base):
    """A source row kept aside, with the reason it was refused."""

    __tablename__ = "rejections"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("data_loads.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))
    stage: Mapped[str] = mapped_column(String(50))  # load | validate | ...
    line: Mapped[int | None]
    key: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    raw_bytes: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Snapshot(Base):
    """A training or evaluation set materialised from the store, identified by its content
    digest."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="training")  # training | evaluation
    digest: Mapped[str] = mapped_column(String(64), index=True)
    as_of_batch_id: Mapped[int | None] = mapped_column(ForeignKey("data_loads.id"))
    row_count: Mapped[int]
    class_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    balanced_counts: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    seed: Mapped[int | None]
    path: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """A model's answer for one item (or one request), with the model version that gave it.

    One answer per item and model version at most: concurrent workers cannot predict twice.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ux_predictions_item_model", "item_id", "model_name", "model_version", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    dataset: Mapped[str | None] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(200))
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(Base):
    """A per-item output that is not a prediction (a summary, a note), with its producer."""

    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    producer: Mapped[str] = mapped_column(String(200))
    producer_version: Mapped[str] = mapped_column(String(50))
    content: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Derivation(Base):
    """An artefact derived from an item (page image, text, embedding), traceable to its parent."""

    __tablename__ = "derivations"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("derivations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(50))
    processor: Mapped[str] = mapped_column(String(200))
    processor_version: Mapped[str] = mapped_column(String(50))
    path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """An account of the API, with an argon2 password hash and one role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))  # viewer | user | admin
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """One attempt to send a notification through one channel (mail, webhook).

    The cooldown reads these rows, so one cause sends one message across every process:
    ``sending`` while in flight, then ``sent`` or ``failed`` (with the error, secrets removed);
    ``skipped`` when the same cause went out within the cooldown.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_cause", "cause", "channel", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cause: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(20))  # mail | webhook
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20))  # sending | sent | failed | skipped
    error: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Who did what to what, and when, with the state before and after (see ``store/audit.py``).

    Append-only: database triggers reject UPDATE and DELETE on SQLite and PostgreSQL.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)  # alias.set | run.trigger | ...
    target: Mapped[str] = mapped_column(String(500), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    detail: Mapped[str | None] = mapped_column(Text)


class DriftCheck(Base):
    """One drift check of a data set's recent inputs against a training snapshot: the report
    (as JSON, and the path of its HTML page), its overall severity, the model it watched."""

    __tablename__ = "drift_reports"
    __table_args__ = (Index("ix_drift_reports_dataset_created", "dataset", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200))
    pipeline: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="SET NULL"))
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(20))  # none | warning | alert | critical
    dataset_drift: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any]]
    html_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def db_timestamp(session: Session, moment: datetime) -> Any:
    """``moment`` as the store's timestamp columns write it, for statements run by the driver
    (which bypass the column types)."""
    dialect = session.get_bind().dialect
    process = Item.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    return process(moment) if process else moment
