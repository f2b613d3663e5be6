"""What every engine does when a run has ended: the pipeline's hooks, then the run-ended mail
and webhook message (when a channel is configured). Neither can fail the run."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from mlfactory.notify import RunReport, run_ended, send
from mlfactory.orchestration.history import get_run
from mlfactory.orchestration.pipeline import Pipeline
from mlfactory.settings import Settings

if TYPE_CHECKING:
    from mlfactory.orchestration.runner import RunOutcome

log = logging.getLogger(__name__)


def announce_run(
    pipeline: Pipeline, outcome: RunOutcome, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """Call the pipeline's success or failure hooks, then send the run-ended message."""
    hooks = pipeline.on_success if outcome.status == "success" else pipeline.on_failure
    for hook in hooks:
        try:
            hook(outcome)
        except Exception:
            log.exception(
                "hook %s of pipeline %s failed", getattr(hook, "__name__", hook), pipeline.name
            )
    if not (settings.smtp_host or settings.notify_webhook_url):
        return
    if outcome.status == "success" and not pipeline.notify_success:
        return
    try:
        run = get_run(sessions, outcome.run_id) or {}
        report = RunReport(
            pipeline=pipeline.name,
            run_id=outcome.run_id,
            status=outcome.status,
            started_at=datetime.fromisoformat(run["started_at"]),
            ended_at=datetime.fromisoformat(run["ended_at"]) if run.get("ended_at") else None,
            metrics=run.get("metrics") or {},
            summary=run.get("summary") or {},
            failed_step=outcome.failed_step,
            error=outcome.error,
            error_type=outcome.error_type,
        )
        send(settings, sessions, run_ended(report, settings.api_public_url), pipeline.notify_to)
    except Exception:  # send() never raises; reading the run back or building the report might
        log.exception("the run-ended message of %s run %s failed", pipeline.name, outcome.run_id)
