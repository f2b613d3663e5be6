"""Drift reports: how recent inputs of a data set compare with its training snapshot."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from mlfactory.api.deps import SessionsDep, SettingsDep, Viewer
from mlfactory.api.schemas import MAX_ID, NO_NUL
from mlfactory.store import DriftCheck

router = APIRouter(tags=["drift"])


class DriftSummary(BaseModel):
    id: int
    dataset: str
    pipeline: str
    run_id: int | None
    model_name: str | None
    severity: str = Field(
        description="none, warning (PSI >= 0.1), alert (>= 0.2), critical (>= 0.3)"
    )
    dataset_drift: bool = Field(description="At least the drift share of the columns drifted.")
    created_at: datetime
    psi: dict[str, float] = Field(description="PSI of each feature group.")


class DriftDetail(DriftSummary):
    report: dict[str, Any] = Field(description="Every column's test, every group's PSI.")


@router.get("/v1/drift", response_model=list[DriftSummary])
def latest_drift(
    _: Viewer,
    sessions: SessionsDep,
    dataset: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> list[DriftSummary]:
    """The latest drift report of every data set (or of ``dataset``)."""
    newest = select(func.max(DriftCheck.id)).group_by(DriftCheck.dataset)
    query = select(DriftCheck).where(DriftCheck.id.in_(newest)).order_by(DriftCheck.dataset)
    if dataset is not None:
        query = query.where(DriftCheck.dataset == dataset)
    with sessions() as session:
        return [_summary(check) for check in session.scalars(query)]


@router.get("/v1/drift/{report_id}", response_model=DriftDetail)
def drift_report(
    _: Viewer, sessions: SessionsDep, report_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> DriftDetail:
    """One drift report in full."""
    with sessions() as session:
        check = _get(session, report_id)
        return DriftDetail(**_summary(check).model_dump(), report=check.report)


@router.get("/v1/drift/{report_id}/html", response_class=HTMLResponse)
def drift_page(
    _: Viewer,
    sessions: SessionsDep,
    settings: SettingsDep,
    report_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
) -> HTMLResponse:
    """The report's HTML page, as written by the drift check (only from the artefacts folder)."""
    with sessions() as session:
        check = _get(session, report_id)
        path = Path(check.html_path).resolve() if check.html_path else None
    if path is None or not path.is_relative_to(settings.artifacts_dir) or not path.is_file():
        raise HTTPException(404, f"the HTML page of drift report {report_id} is gone")
    return HTMLResponse(path.read_text(encoding="utf-8"))


def _get(session: Any, report_id: int) -> DriftCheck:
    check = session.get(DriftCheck, report_id)
    if check is None:
        raise HTTPException(404, f"no drift report {report_id}")
    return check


def _summary(check: DriftCheck) -> DriftSummary:
    return DriftSummary(
        id=check.id,
        dataset=check.dataset,
        pipeline=check.pipeline,
        run_id=check.run_id,
        model_name=check.model_name,
        severity=check.severity,
        dataset_drift=check.dataset_drift,
        created_at=check.created_at,
        psi={group["group"]: group["psi"] for group in check.report.get("groups", [])},
    )
