"""The store: SQLAlchemy tables, engines and sessions, Alembic migrations."""

from mlfactory.store.engine import dispose_engines, get_engine, migrate, session_factory
from mlfactory.store.tables import (
    Annotation,
    AuditLog,
    Base,
    DataLoad,
    Derivation,
    DriftCheck,
    Item,
    ItemHistory,
    Notification,
    PipelineRun,
    Prediction,
    Rejection,
    Snapshot,
    TaskRun,
    User,
    utcnow,
)

__all__ = [
    "Annotation",
    "AuditLog",
    "Base",
    "DataLoad",
    "Derivation",
    "DriftCheck",
    "Item",
    "ItemHistory",
    "Notification",
    "PipelineRun",
    "Prediction",
    "Rejection",
    "Snapshot",
    "TaskRun",
    "User",
    "dispose_engines",
    "get_engine",
    "migrate",
    "session_factory",
    "utcnow",
]
