"""Shapes shared by several route modules: bounded request parameters and run records.

Run records mirror what :mod:`mlfactory.orchestration.history` reads back, so the API, the CLI
(``--json``) and the status page describe a run in the same words.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

NO_NUL = r"^[^\x00]*$"
"""Pattern of every text parameter: PostgreSQL refuses NUL characters in text."""
MAX_ID = 2**31 - 1
"""Largest id a path accepts: ids are 32-bit integers in the store."""


def _as_utc(moment: datetime | None) -> datetime | None:
    """Naive timestamps are taken as UTC; every timestamp is compared in UTC."""
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp is out of range once converted to UTC") from None


Moment = Annotated[datetime | None, AfterValidator(_as_utc)]


class StepState(BaseModel):
    """The outcome of one step: its last attempt, and how many attempts it took."""

    step: str
    status: str = Field(description="success | failed | running | upstream_failed")
    attempts: int = Field(description="Attempts made (0 when the step was skipped).")
    duration_s: float | None = Field(description="Seconds of all attempts together.")
    error: str | None = Field(description="The error of the last attempt, if it failed.")


class Attempt(BaseModel):
    step: str
    attempt: int
    status: str
    engine: str
    duration_s: float | None
    error: str | None
    traceback: str | None = Field(description="Admins only; null for other roles.")
    output: dict[str, Any] | None


class RunSummary(BaseModel):
    id: int
    pipeline: str
    status: str = Field(description="running | success | failed")
    engine: str
    params: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    error: str | None
    failed_step: str | None = Field(description="The first step that failed, if any.")
    mlflow_run_id: str | None
    model_name: str | None
    model_version: str | None
    metrics: dict[str, Any]
    summary: dict[str, Any]
    step_states: dict[str, int] = Field(description="How many steps ended in each state.")
    steps: list[StepState] = Field(description="Each step in the order it first ran.")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunSummary:
        """Build from a record of :mod:`mlfactory.orchestration.history`."""
        steps = step_states(record["attempts"])
        failed = next((step.step for step in steps if step.status == "failed"), None)
        return cls.model_validate({**record, "steps": steps, "failed_step": failed})


class RunDetail(RunSummary):
    attempts: list[Attempt] = Field(description="Every attempt of every step, oldest first.")

    def seen_by(self, role: str) -> RunDetail:
        """The run as ``role`` may read it: tracebacks (server paths, code) for admins only."""
        if role == "admin":
            return self
        attempts = [attempt.model_copy(update={"traceback": None}) for attempt in self.attempts]
        return self.model_copy(update={"attempts": attempts})


def step_states(attempts: list[dict[str, Any]]) -> list[StepState]:
    """One state per step from its attempts (in the order they were recorded)."""
    by_step: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_step.setdefault(attempt["step"], []).append(attempt)
    states = []
    for step, tries in by_step.items():
        last = tries[-1]
        durations = [t["duration_s"] for t in tries if t["duration_s"] is not None]
        states.append(
            StepState(
                step=step,
                status=last["status"],
                attempts=sum(1 for t in tries if t["attempt"] > 0),
                duration_s=sum(durations) if durations else None,
                error=last["error"],
            )
        )
    return states
