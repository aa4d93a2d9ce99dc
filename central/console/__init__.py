"""The supervisor console: server-rendered pages (Jinja2), a little vanilla JS for live alerts, and the alert stream.

Routers are registered by `central.app.create_app` through `install_console`.
"""
