"""Alert routing: rules, dedupe, channels (console SSE, webhook, e-mail), escalation and derived alerts.

`AlertingService` runs one background thread per API process; see `central/alerting/service.py`.
"""
