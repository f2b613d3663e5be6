"""Runs announce themselves: a mail when a run ends (success or failure) and when a champion
changes, an audit row for every alias the champion rule moves; a mail server that is down never
fails a run."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mail_server import bodies, free_port, with_mail
from mlfactory.orchestration import Context, Pipeline, Step, run_pipeline
from mlfactory.orchestration.registry import get_pipeline
from mlfactory.settings import Settings
from mlfactory.store import AuditLog, Notification


class Broken(RuntimeError):
    pass


def count_rows(ctx: Context) -> dict[str, Any]:
    return {"rows": 3}


def break_down(ctx: Context) -> None:
    raise Broken("the source has no header <b>")


def pipeline_of(*steps: Step) -> Pipeline:
    return Pipeline(name="announced", steps=steps, notify_to=("owner@example.org",))


def test_success_and_failure_are_mailed_to_the_pipelines_recipients(
    settings: Settings, sessions, smtp_server
) -> None:
    port, inbox = smtp_server()
    configured = with_mail(settings, port)
    good = run_pipeline(pipeline_of(Step("count", count_rows)), settings=configured)
    bad = run_pipeline(
        pipeline_of(Step("count", count_rows), Step("load", break_down, needs=("count",))),
        settings=configured,
    )
    assert (good.status, bad.status) == ("success", "failed")

    assert len(inbox.messages) == 2
    (to_good, mail_good, _), (to_bad, mail_bad, _) = inbox.messages
    assert to_good == to_bad == ["owner@example.org"]  # the pipeline's own, not MLF_NOTIFY_TO
    assert "announced" in mail_good["Subject"] and str(good.run_id) in mail_good["Subject"]
    plain, html = bodies(mail_bad)
    assert "load" in plain and "Broken" in plain and "the source has no header" in plain
    assert f"mlfactory runs --id {bad.run_id}" in plain
    assert "header &lt;b&gt;" in html and "header <b>" not in html  # escaped


def test_a_mail_server_that_is_down_does_not_fail_the_run(settings: Settings, sessions) -> None:
    unreachable = with_mail(settings, free_port())
    outcome = run_pipeline(pipeline_of(Step("count", count_rows)), settings=unreachable)
    assert outcome.status == "success"
    with sessions() as session:
        statuses = session.scalars(select(Notification.status)).all()
    assert statuses == ["failed"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_champion_rule_audits_alias_moves_and_mails_a_new_champion(
    settings: Settings, sessions, smtp_server, model_name: str
) -> None:
    port, inbox = smtp_server()
    configured = with_mail(settings, port)
    advertising = get_pipeline("advertising")
    first = run_pipeline(advertising, {"model_name": model_name}, settings=configured)
    second = run_pipeline(advertising, {"model_name": model_name}, settings=configured)
    assert first.outputs["promote"]["alias"] == "champion"
    assert second.outputs["promote"]["alias"] == "challenger"  # the same data scores the same

    with sessions() as session:
        moves = session.execute(
            select(AuditLog.action, AuditLog.target, AuditLog.before, AuditLog.after).order_by(
                AuditLog.id
            )
        ).all()
    assert [tuple(move) for move in moves] == [
        ("alias.set", f"model:{model_name}@champion", {"champion": None}, {"champion": "1"}),
        ("alias.set", f"model:{model_name}@challenger", {"champion": "1"}, {"challenger": "2"}),
    ]
    subjects = [message["Subject"] for _, message, _ in inbox.messages]
    promotions = [subject for subject in subjects if "is the new champion" in subject]
    assert len(promotions) == 1, subjects  # only the first run made a new champion
    assert len(subjects) == 3  # and each run mailed its end


def test_a_pipeline_that_announces_failures_only_mails_no_success(
    settings: Settings, sessions, smtp_server
) -> None:
    port, inbox = smtp_server()
    configured = with_mail(settings, port)
    quiet = Pipeline(
        name="quiet",
        steps=(Step("count", count_rows),),
        notify_to=("owner@example.org",),
        notify_success=False,
    )
    assert run_pipeline(quiet, settings=configured).status == "success"
    assert inbox.messages == []
    broken = Pipeline(
        name="quiet",
        steps=(Step("load", break_down),),
        notify_to=("owner@example.org",),
        notify_success=False,
    )
    failed = run_pipeline(broken, settings=configured)
    ((_, mail, _),) = inbox.messages
    assert failed.status == "failed" and str(failed.run_id) in mail["Subject"]


def test_a_drift_alert_is_mailed_and_recorded(settings: Settings, sessions, smtp_server) -> None:
    """The drift report of a step (as the templates' drift step and arxiv_monitor make it): at
    severity alert or above, a message goes out; the report is stored either way."""
    import numpy as np
    import pandas as pd

    from mlfactory.monitoring import compare
    from mlfactory.pipelines.common import record_drift
    from mlfactory.store import DriftCheck

    port, inbox = smtp_server()
    configured = with_mail(settings, port).model_copy(update={"notify_to": ["ops@example.org"]})
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(35, 5, 500)})
    shifted = pd.DataFrame({"age": rng.normal(60, 5, 500)})  # everyone 25 years older

    def watch(ctx: Context) -> dict[str, Any]:
        report = compare(reference, shifted)
        return record_drift(
            ctx, report, dataset="people", snapshot_id=None, model_name="m", title="drift"
        )

    outcome = run_pipeline(
        Pipeline(name="watched", steps=(Step("drift", watch),), notify_success=False),
        settings=configured,
    )

    assert outcome.status == "success", outcome.error
    assert outcome.outputs["drift"]["severity"] == "critical"
    ((recipients, mail, _),) = inbox.messages
    assert recipients == ["ops@example.org"]
    assert "drift" in mail["Subject"].lower() and "critical" in mail["Subject"].lower()
    with sessions() as session:
        check = session.scalars(select(DriftCheck)).one()
    assert (check.dataset, check.severity, check.run_id) == ("people", "critical", outcome.run_id)
