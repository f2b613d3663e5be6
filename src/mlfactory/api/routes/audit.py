"""The audit trail: who moved an alias, triggered a run, reloaded a model or logged in."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from mlfactory.api.deps import Admin, SessionsDep
from mlfactory.api.schemas import MAX_ID, NO_NUL
from mlfactory.store.audit import MAX_PAGE, list_entries

router = APIRouter(tags=["audit"])

Filter = Annotated[str | None, Query(max_length=500, pattern=NO_NUL)]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str = Field(description="alias.set, run.trigger, model.reload, login, login.failed")
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


class AuditPage(BaseModel):
    total: int = Field(description="Entries matching, over all pages.")
    limit: int
    offset: int
    entries: list[AuditEntry] = Field(description="Newest first.")


@router.get("/v1/audit", response_model=AuditPage)
def audit_trail(
    _: Admin,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    actor: Filter = None,
    action: Filter = None,
    target: Filter = None,
) -> AuditPage:
    """A page of the append-only audit trail, newest first, optionally filtered."""
    with sessions() as session:
        total, entries = list_entries(
            session, limit=limit, offset=offset, actor=actor, action=action, target=target
        )
        return AuditPage(
            total=total,
            limit=limit,
            offset=offset,
            entries=[AuditEntry.model_validate(entry, from_attributes=True) for entry in entries],
        )
