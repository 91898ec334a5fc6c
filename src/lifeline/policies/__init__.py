"""Escalation policies: who is told when about an open escalation, and what runs the clock."""
