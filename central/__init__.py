"""The reference central endpoint: agent API, store, alert routing, console and reports."""
