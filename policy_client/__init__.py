"""Talks to the central endpoint: wire schema, enrolment, signed policy, event upload, secrets."""
