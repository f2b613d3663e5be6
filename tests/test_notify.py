"""Notifications against real servers: a local aiosmtpd SMTP server (plain, STARTTLS with a
self-signed certificate and required AUTH, implicit TLS), a local HTTP server as the webhook,
and the cooldown kept in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from mail_server import bodies, free_port, with_mail
from mlfactory.notify import (
    DriftAlert,
    DriftGroup,
    Promotion,
    RunReport,
    drift_alert,
    promotion,
    recipients,
    run_ended,
    send,
)
from mlfactory.notify.webhook import payload
from mlfactory.settings import Settings
from mlfactory.store.tables import Notification

USER, PASSWORD = "mailer", "s3cret-Pa55word"
API_URL = "http://mlf.example.org:8000"
STARTED = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def failed_run(step: str = "train", run_id: int = 41) -> RunReport:
    return RunReport(
        pipeline="advertising",
        run_id=run_id,
        status="failed",
        started_at=STARTED,
        ended_at=STARTED + timedelta(seconds=95),
        failed_step=step,
        error="ValueError: column 'Age' has 12 values <0 & 3 missing",
    )


def succeeded_run() -> RunReport:
    return RunReport(
        pipeline="advertising",
        run_id=42,
        status="success",
        started_at=STARTED,
        ended_at=STARTED + timedelta(minutes=2, seconds=5),
        metrics={"accuracy": 0.9633333, "f1": 0.961},
        summary={"rows": 1000, "model_version": "7"},
    )


# --- a real SMTP server -------------------------------------------------------------------


def check_password(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself


def attempts(sessions: sessionmaker[Session], cause: str) -> list[tuple[str, str, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Notification.channel, Notification.status, Notification.error)
            .where(Notification.cause == cause)
            .order_by(Notification.id)
        )
        return [tuple(row) for row in rows]


# --- mail ---------------------------------------------------------------------------------


def test_run_messages_arrive_with_text_and_html_parts(settings: Settings, sessions, smtp_server):
    port, inbox = smtp_server()
    configured = with_mail(settings, port)

    done = send(configured, sessions, run_ended(succeeded_run(), API_URL), ["ds@example.org"])
    failed = send(configured, sessions, run_ended(failed_run(), API_URL))

    assert (done.status("mail"), failed.status("mail")) == ("sent", "sent")
    assert [to for to, _, _ in inbox.messages] == [["ds@example.org"], ["team@example.org"]]
    (_, success, _), (_, failure, _) = inbox.messages

    assert success["Subject"] == "[mlfactory] advertising: run 42 succeeded"
    assert success["From"] == "mlfactory@example.org"
    assert success.get_content_type() == "multipart/alternative"
    text, html = bodies(success)
    for body in (text, html):
        assert "mlfactory runs --id 42" in body
        assert f"{API_URL}/status/advertising" in body
        assert "0.9633" in body and "2 min 05 s" in body

    assert failure["Subject"] == "[mlfactory] advertising: run 41 failed at step train"
    text, html = bodies(failure)
    assert "Failed step: train" in text
    assert "ValueError: column 'Age' has 12 values <0 & 3 missing" in text
    assert "mlfactory runs --id 41" in text and "1 min 35 s" in text
    # The HTML part carries the same error, escaped.
    assert "Step train failed" in html
    assert "values &lt;0 &amp; 3 missing" in html and "<0 &" not in html
    assert attempts(sessions, failed.cause) == [("mail", "sent", None)]


def test_starttls_with_auth_verifies_the_server_and_the_password(
    settings: Settings, sessions, smtp_server, certificate, monkeypatch, caplog
):
    cert_path, server_tls = certificate
    port, inbox = smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=check_password,
    )
    message = run_ended(failed_run(), API_URL)
    caplog.set_level(logging.DEBUG)  # every logger, the SMTP server's included

    def attempt(password: str) -> tuple[str | None, str | None]:
        configured = with_mail(
            settings,
            port,
            smtp_security="starttls",
            smtp_user=USER,
            smtp_password=SecretStr(password),
        )
        outcome = send(configured, sessions, message).outcomes[0]
        return outcome.status, outcome.error

    # The self-signed certificate is not trusted yet: the client refuses the server.
    status, error = attempt(PASSWORD)
    assert status == "failed" and "CERTIFICATE_VERIFY_FAILED" in (error or "")

    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    status, error = attempt("not-the-password")
    assert status == "failed" and "SMTPAuthenticationError" in (error or "")
    assert inbox.messages == []

    # Failed attempts do not hold the cause back: the right password gets the message out.
    assert attempt(PASSWORD) == ("sent", None)
    [(to, received, over_tls)] = inbox.messages
    assert to == ["team@example.org"] and over_tls
    assert received["Subject"] == message.subject

    recorded = attempts(sessions, message.cause)
    assert [status for _, status, _ in recorded] == ["failed", "failed", "sent"]
    logged = caplog.text
    assert "SMTPAuthenticationError" in logged  # the failure is logged...
    for secret in (PASSWORD, "not-the-password"):  # ...the passwords are not, nor stored
        assert secret not in logged
        assert all(secret not in (error or "") for _, _, error in recorded)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_mode(settings: Settings, sessions, smtp_server, certificate, monkeypatch):
    cert_path, server_tls = certificate
    # aiosmtpd only sees TLS it negotiated itself (STARTTLS): over implicit TLS it must be told
    # to offer AUTH.
    port, inbox = smtp_server(
        ssl_context=server_tls,
        auth_required=True,
        auth_require_tls=False,
        authenticator=check_password,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    configured = with_mail(
        settings, port, smtp_security="ssl", smtp_user=USER, smtp_password=SecretStr(PASSWORD)
    )

    delivery = send(configured, sessions, run_ended(succeeded_run()))

    assert delivery.status("mail") == "sent"
    [(_, received, over_tls)] = inbox.messages
    assert over_tls and received["Subject"] == "[mlfactory] advertising: run 42 succeeded"


def test_an_unreachable_smtp_server_is_recorded_not_raised(settings: Settings, sessions, caplog):
    configured = with_mail(settings, free_port())  # nothing listens there
    message = run_ended(failed_run())

    delivery = send(configured, sessions, message)

    [outcome] = delivery.outcomes
    assert (outcome.channel, outcome.status) == ("mail", "failed")
    assert "ConnectionRefusedError" in (outcome.error or "")
    assert attempts(sessions, message.cause) == [("mail", "failed", outcome.error)]
    assert "ConnectionRefusedError" in caplog.text


def test_mail_without_recipients_fails_with_a_clear_error(settings: Settings, sessions):
    configured = with_mail(settings, free_port(), notify_to=[])

    delivery = send(configured, sessions, run_ended(failed_run()))

    assert delivery.status("mail") == "failed"
    assert "no recipients: set MLF_NOTIFY_TO" in (delivery.outcomes[0].error or "")


def test_mail_goes_out_when_the_store_is_down(tmp_path: Path, smtp_server):
    port, inbox = smtp_server()
    configured = with_mail(Settings(home=tmp_path / "home"), port)
    unreachable = sessionmaker(
        create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
            connect_args={"connect_timeout": 2},
        )
    )

    delivery = send(configured, unreachable, run_ended(failed_run()))

    assert delivery.status("mail") == "sent"
    assert len(inbox.messages) == 1


def test_recipients_are_the_pipelines_own_else_notify_to(settings: Settings):
    configured = settings.model_copy(update={"notify_to": ["team@example.org"]})

    assert recipients(configured) == ["team@example.org"]
    assert recipients(configured, ["a@example.org", " a@example.org", "b@example.org"]) == [
        "a@example.org",
        "b@example.org",
    ]


# --- the cooldown -------------------------------------------------------------------------


def test_the_cooldown_sends_one_message_per_cause(settings: Settings, sessions, smtp_server):
    port, inbox = smtp_server()
    configured = with_mail(settings, port, notify_cooldown_minutes=30)
    train_failed = run_ended(failed_run("train", run_id=1))
    # Another process: its own engine and sessions on the same store.
    other_engine = create_engine(settings.database_url)
    other_process = sessionmaker(other_engine, expire_on_commit=False)

    first = send(configured, sessions, train_failed)
    again = send(configured, sessions, run_ended(failed_run("train", run_id=2)))
    elsewhere = send(configured, other_process, train_failed)
    other_step = send(configured, other_process, run_ended(failed_run("evaluate", run_id=3)))

    assert first.cause == again.cause == "run-failed:advertising:train:ValueError"
    statuses = [d.status("mail") for d in (first, again, elsewhere, other_step)]
    assert statuses == ["sent", "skipped", "skipped", "sent"]
    assert [m["Subject"] for _, m, _ in inbox.messages] == [
        "[mlfactory] advertising: run 1 failed at step train",
        "[mlfactory] advertising: run 3 failed at step evaluate",
    ]
    assert [status for _, status, _ in attempts(sessions, first.cause)] == [
        "sent",
        "skipped",
        "skipped",
    ]

    # Once the cooldown has passed, the cause may speak again.
    with sessions.begin() as session:
        session.execute(
            update(Notification)
            .where(Notification.cause == first.cause)
            .values(sent_at=datetime.now(UTC) - timedelta(minutes=31))
        )
    assert send(configured, other_process, train_failed).status("mail") == "sent"
    assert len(inbox.messages) == 3
    other_engine.dispose()


def test_concurrent_senders_send_a_cause_once(settings: Settings, sessions, smtp_server):
    port, inbox = smtp_server()  # (``sessions`` has migrated the store)
    configured = with_mail(settings, port)
    message = drift_alert(
        DriftAlert("advertising", "critical", (DriftGroup("Age", 0.41, 0.3),)),
    )
    workers = 4
    engines = [create_engine(settings.database_url) for _ in range(workers)]
    start = threading.Barrier(workers)
    results: list[str | None] = []

    def worker(index: int) -> None:
        start.wait()
        results.append(send(configured, sessionmaker(engines[index]), message).status("mail"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()

    assert sorted(results, key=str) == ["sent", "skipped", "skipped", "skipped"]
    assert len(inbox.messages) == 1


# --- the webhook --------------------------------------------------------------------------


@dataclass
class Hook:
    url: str
    received: list[tuple[str, str, dict[str, Any]]]


@pytest.fixture
def webhook_server() -> Iterator[Callable[[int], Hook]]:
    """A local HTTP server answering every POST with the given status; what it received."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> Hook:
        received: list[tuple[str, str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no_service")

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port = server.server_address[1]
        return Hook(f"http://127.0.0.1:{port}/services/T0001/B0002/tok3nS3cret", received)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_webhook_receives_slack_json(settings: Settings, sessions, webhook_server):
    hook = webhook_server(200)
    configured = settings.model_copy(update={"notify_webhook_url": hook.url})
    message = run_ended(failed_run(), API_URL)

    delivery = send(configured, sessions, message)

    assert [(o.channel, o.status) for o in delivery.outcomes] == [("webhook", "sent")]
    [(path, content_type, body)] = hook.received
    assert path == "/services/T0001/B0002/tok3nS3cret"
    assert content_type == "application/json"
    assert body["text"] == "[mlfactory] advertising: run 41 failed at step train"
    header, section, link = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": body["text"]},
    }
    assert section["text"]["type"] == "mrkdwn"
    assert "Failed step: train" in section["text"]["text"]
    assert "values &lt;0 &amp; 3 missing" in section["text"]["text"]  # Slack's own escaping
    assert f"{API_URL}/status/advertising" in link["text"]["text"]
    assert attempts(sessions, message.cause) == [("webhook", "sent", None)]


def test_a_refused_webhook_is_recorded_without_its_secret_url(
    settings: Settings, sessions, webhook_server, caplog
):
    hook = webhook_server(500)
    configured = settings.model_copy(update={"notify_webhook_url": hook.url})
    message = run_ended(succeeded_run())

    delivery = send(configured, sessions, message)

    [outcome] = delivery.outcomes
    assert outcome.status == "failed" and "500" in (outcome.error or "")
    assert len(hook.received) == 1
    assert "tok3nS3cret" not in (outcome.error or "")
    assert "tok3nS3cret" not in caplog.text
    assert attempts(sessions, message.cause) == [("webhook", "failed", outcome.error)]


def test_long_messages_fit_slacks_limits():
    long_error = "RuntimeError: " + "x" * 5000
    body = payload(run_ended(replace(failed_run("s" * 300), error=long_error)))

    header, section = body["blocks"]
    assert len(header["text"]["text"]) == 150
    assert len(section["text"]["text"]) == 3000
    assert section["text"]["text"].startswith("```") and section["text"]["text"].endswith("```")


# --- the messages -------------------------------------------------------------------------


def test_promotion_message_compares_old_and_new_champion():
    message = promotion(
        Promotion(
            model_name="advertising-clicks",
            new_version="5",
            new_metrics={"f1": 0.93, "accuracy": 0.95},
            old_version="4",
            old_metrics={"f1": 0.9, "accuracy": 0.96},
            pipeline="advertising",
            run_id=42,
        ),
        API_URL,
    )

    assert message.cause == "promotion:advertising-clicks:5"
    assert message.subject == "[mlfactory] advertising-clicks: version 5 is the new champion"
    assert "Old champion: version 4" in message.text
    assert "f1: 0.9 -> 0.93 (+0.03)" in message.text
    assert "accuracy: 0.96 -> 0.95 (-0.01)" in message.text
    assert "mlfactory runs --id 42" in message.text
    assert message.link == f"{API_URL}/status/advertising"
    assert "<td style=" in message.html and "+0.03" in message.html


def test_drift_message_lists_the_groups_worst_first():
    alert = DriftAlert(
        pipeline="products",
        severity="alert",
        groups=(DriftGroup("price", 0.22, 0.2), DriftGroup("text <length>", 0.35, 0.2)),
        model_name="products-type",
        model_version="3",
    )

    message = drift_alert(alert)

    assert message.cause == "drift:products:alert"
    assert message.subject == "[mlfactory] products: alert drift in 2 groups"
    lines = message.text.splitlines()
    assert lines.index("  text <length>: 0.35 / 0.2") < lines.index("  price: 0.22 / 0.2")
    assert "text &lt;length&gt;" in message.html and "<length>" not in message.html
    assert message.link is None  # no API address known


def test_bad_message_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="run status must be one of success, failed"):
        RunReport("p", 1, "crashed", STARTED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="started_at must be timezone-aware"):
        RunReport("p", 1, "success", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="drift severity must be one of"):
        DriftAlert("p", "none", (DriftGroup("a", 1, 0.1),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one group"):
        DriftAlert("p", "warning", ())


def test_a_subject_cannot_inject_headers():
    report = failed_run(step="train\r\nBcc: everyone@example.org")

    message = run_ended(report)

    assert "\n" not in message.subject and "\r" not in message.subject
