"""Mail and webhook messages when runs end, champions change or drift alerts fire.

Build a message from plain data (``run_ended``, ``promotion``, ``drift_alert``), then ``send``
it: every configured channel gets it once per cause within the cooldown, and nothing raises.
"""

from mlfactory.notify.mail import recipients
from mlfactory.notify.messages import (
    DriftAlert,
    DriftGroup,
    Message,
    Promotion,
    RunReport,
    drift_alert,
    promotion,
    run_ended,
    status_url,
)
from mlfactory.notify.send import Delivery, Outcome, send

__all__ = [
    "Delivery",
    "DriftAlert",
    "DriftGroup",
    "Message",
    "Outcome",
    "Promotion",
    "RunReport",
    "drift_alert",
    "promotion",
    "recipients",
    "run_ended",
    "send",
    "status_url",
]
