"""Delivering one alert message: webhook (Slack/Teams-compatible JSON, HMAC-signed) and e-mail over SMTP.

Called from the alerting thread (outbox delivery); blocking I/O with short timeouts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from central.netguard import InternalTarget, check_webhook_url
from central.safe_text import chat_text
from central.store.console_config import ConsoleConfig

SIGNATURE_HEADER = "X-DeskWarden-Signature"
TIMESTAMP_HEADER = "X-DeskWarden-Timestamp"
TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """The channel did not take the message; the outbox retries later."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body): what receivers recompute to verify."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def describe(alert: dict[str, Any], *, escalated: bool = False) -> str:
    # Hostname, user and team come from devices and admins: inert in chat markup, one line each.
    where = chat_text(alert.get("hostname") or alert.get("device_id") or "fleet")
    prefix = "ESCALATED: " if escalated else ""
    return (
        f"{prefix}[{chat_text(str(alert.get('severity', '')).upper())}] {chat_text(alert.get('kind'))} on {where} "
        f"(team {chat_text(alert.get('team'))}, user {chat_text(alert.get('user') or '-')}) — alert #{alert.get('id')}"
    )


def message_payload(alert: dict[str, Any], *, base_url: str, escalated: bool = False) -> dict[str, Any]:
    """What goes into the outbox: the text line, a link, the playbook and the alert itself."""
    link = f"{base_url.rstrip('/')}{alert.get('url', '')}" if base_url else str(alert.get("url", ""))
    slim = {k: v for k, v in alert.items() if k not in ("data",)}
    return {
        "text": describe(alert, escalated=escalated) + (f"\n{link}" if link else ""),
        "alert": slim,
        "escalated": escalated,
        "link": link,
    }


class Sender(Protocol):
    def __call__(
        self, channel: str, target: dict[str, Any], payload: dict[str, Any], config: ConsoleConfig
    ) -> None: ...


@dataclass(frozen=True)
class NetworkSender:
    """The real sender: HTTP POST for webhooks, SMTP for e-mail."""

    allow_internal: bool = False
    """Webhooks to loopback/private/link-local addresses (checked again at each delivery: DNS may change)."""

    def __call__(self, channel: str, target: dict[str, Any], payload: dict[str, Any], config: ConsoleConfig) -> None:
        if channel == "webhook":
            try:
                check_webhook_url(str(target["url"]), allow_internal=self.allow_internal)
            except InternalTarget as exc:
                raise DeliveryError(str(exc)) from None
            post_webhook(str(target["url"]), payload, secret=config.webhook_secret)
        elif channel == "email":
            send_email(list(target.get("to", [])), payload, config=config)
        else:
            raise DeliveryError(f"unknown channel {channel}")


def post_webhook(url: str, payload: dict[str, Any], *, secret: str, timestamp: str | None = None) -> None:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
    stamp = timestamp or str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, "User-Agent": "DeskWarden-alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from None
    if answer.status_code >= 300:
        raise DeliveryError(f"webhook answered {answer.status_code}")


def send_email(to: list[str], payload: dict[str, Any], *, config: ConsoleConfig) -> None:
    if not config.smtp_host:
        raise DeliveryError("no SMTP host configured")
    if not to:
        raise DeliveryError("e-mail channel has no recipients")
    alert = payload.get("alert", {})
    msg = EmailMessage()
    msg["From"] = config.smtp_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = "[DeskWarden] " + str(payload.get("text", "")).splitlines()[0][:180]
    steps = alert.get("playbook", {}).get("steps", []) if isinstance(alert.get("playbook"), dict) else []
    lines = [str(payload.get("text", ""))]
    if steps:
        lines += ["", "Playbook:"] + [f"  {i}. {s}" for i, s in enumerate(steps, 1)]
    msg.set_content("\n".join(lines) + "\n")
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=TIMEOUT_S) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from None
