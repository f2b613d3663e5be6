"""The messages: what they say about a run, a promotion or a drift alert, and their cause.

Inputs are plain data defined here, filled by whoever calls (orchestration hooks, the promotion
code, monitoring), so this package depends on none of them. Every message has a cause key; the
cooldown sends one message per cause (see ``cooldown.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import quote

from mlfactory.notify.templates import render

RunStatus = Literal["success", "failed"]
Severity = Literal["warning", "alert", "critical"]  # as monitoring grades PSI

_ERROR_CLASS = re.compile(r"([A-Za-z_][\w.]*): ")
"""How run records write an error: ``ValueError: the message``."""


@dataclass(frozen=True)
class Message:
    """One notification, ready for every channel."""

    cause: str
    subject: str
    text: str
    html: str
    link: str | None = None  # where to look (the status page), when an API URL is known

    def __post_init__(self) -> None:
        if not self.cause.strip():
            raise ValueError("a message needs a cause key")
        # A header holds one line: a name with a line break must not inject another header.
        object.__setattr__(self, "subject", " ".join(self.subject.split()))


@dataclass(frozen=True)
class RunReport:
    """The facts of an ended pipeline run, as the run record holds them."""

    pipeline: str
    run_id: int
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None
    error_type: str | None = None  # read from ``error`` ("ValueError: ...") when not given

    def __post_init__(self) -> None:
        _check_choice("run status", self.status, RunStatus)
        _check_aware("started_at", self.started_at)
        if self.ended_at is not None:
            _check_aware("ended_at", self.ended_at)

    @property
    def error_class(self) -> str:
        if self.error_type:
            return self.error_type
        found = _ERROR_CLASS.match(self.error or "")
        return found.group(1) if found else "error"


@dataclass(frozen=True)
class Promotion:
    """A registered model version became the champion, replacing ``old_version`` (if any)."""

    model_name: str
    new_version: str
    new_metrics: Mapping[str, Any]
    old_version: str | None = None
    old_metrics: Mapping[str, Any] = field(default_factory=dict)
    pipeline: str | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class DriftGroup:
    """A feature or group of inputs whose drift score crossed its threshold."""

    name: str
    score: float
    threshold: float


@dataclass(frozen=True)
class DriftAlert:
    """Drift detected on a pipeline's model inputs or predictions; ``groups`` are those over
    their threshold."""

    pipeline: str
    severity: Severity
    groups: tuple[DriftGroup, ...]
    model_name: str | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        _check_choice("drift severity", self.severity, Severity)
        if not self.groups:
            raise ValueError("a drift alert names at least one group over its threshold")


def run_ended(report: RunReport, api_url: str | None = None) -> Message:
    """The success or failure message of a run; ``api_url`` adds the status page's address."""
    if report.status == "success":
        # Each successful run is news of its own; the run id only stops a repeated hook of the
        # same run from mailing twice.
        headline = f"{report.pipeline}: run {report.run_id} succeeded"
        cause = f"run-succeeded:{report.pipeline}:{report.run_id}"
    else:
        step = report.failed_step or "run"
        headline = f"{report.pipeline}: run {report.run_id} failed"
        if report.failed_step:
            headline += f" at step {report.failed_step}"
        cause = f"run-failed:{report.pipeline}:{step}:{report.error_class}"
    link = status_url(api_url, report.pipeline)
    duration = (
        format_duration((report.ended_at - report.started_at).total_seconds())
        if report.ended_at
        else "unknown (no end time)"
    )
    return _message(
        "run_ended",
        cause,
        headline,
        link,
        run=report,
        started=_utc(report.started_at),
        duration=duration,
        metrics=sorted(report.metrics.items()),
        summary=sorted(report.summary.items()),
    )


def promotion(change: Promotion, api_url: str | None = None) -> Message:
    """The champion moved: old and new version side by side with their metrics."""
    names = sorted({*change.new_metrics, *change.old_metrics})
    rows = [
        (
            name,
            change.old_metrics.get(name),
            change.new_metrics.get(name),
            _difference(change.old_metrics.get(name), change.new_metrics.get(name)),
        )
        for name in names
    ]
    return _message(
        "promotion",
        f"promotion:{change.model_name}:{change.new_version}",
        f"{change.model_name}: version {change.new_version} is the new champion",
        status_url(api_url, change.pipeline),
        change=change,
        rows=rows,
    )


def drift_alert(alert: DriftAlert, api_url: str | None = None) -> Message:
    """Which groups drifted, by how much, against which threshold; worst first."""
    count = len(alert.groups)
    return _message(
        "drift",
        f"drift:{alert.pipeline}:{alert.severity}",
        f"{alert.pipeline}: {alert.severity} drift in {count} group{'s' if count > 1 else ''}",
        status_url(api_url, alert.pipeline),
        alert=alert,
        groups=sorted(alert.groups, key=lambda group: group.score, reverse=True),
    )


def status_url(api_url: str | None, pipeline: str | None) -> str | None:
    """The API's status page of ``pipeline``, when the API's public address is known."""
    if not api_url or not pipeline:
        return None
    return f"{api_url.rstrip('/')}/status/{quote(pipeline, safe='')}"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _message(template: str, cause: str, headline: str, link: str | None, **context: Any) -> Message:
    text, html = render(template, headline=headline, link=link, **context)
    return Message(cause=cause, subject=f"[mlfactory] {headline}", text=text, html=html, link=link)


def _difference(old: Any, new: Any) -> float | None:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)):
        return new - old
    return None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _check_choice(what: str, value: str, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")


def _check_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive {moment.isoformat()}")
