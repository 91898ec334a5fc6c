"""Every table, imported once so that metadata (and Alembic) sees the whole schema."""

from lifeline.accounts.models import Account, ApiToken, User, WebSession
from lifeline.ai_sessions.models import AISession, Message
from lifeline.analytics.models import REPORT_INDEXES
from lifeline.db import Base
from lifeline.handoffs.models import Handoff
from lifeline.idempotency import IdempotencyRecord
from lifeline.integrations.models import (
    DeliveryAttempt,
    SlackIntegration,
    SlackInteraction,
    SlackMessage,
    WebhookEndpoint,
)
from lifeline.notifications.models import Delivery, PendingWave
from lifeline.policies.models import EscalationPolicyRecord, EscalationSchedule
from lifeline.realtime.models import Event

__all__ = [
    "REPORT_INDEXES",
    "AISession",
    "Account",
    "ApiToken",
    "Base",
    "Delivery",
    "DeliveryAttempt",
    "EscalationPolicyRecord",
    "EscalationSchedule",
    "Event",
    "Handoff",
    "IdempotencyRecord",
    "Message",
    "PendingWave",
    "SlackIntegration",
    "SlackInteraction",
    "SlackMessage",
    "User",
    "WebSession",
    "WebhookEndpoint",
]
