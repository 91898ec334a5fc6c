"""Outbound integrations: signed webhooks and a Slack channel, both fed by the outbox."""
