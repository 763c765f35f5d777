"""Test doubles that run for real on loopback (a fake Slack, ...)."""
