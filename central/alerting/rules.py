"""Routing rules: which alerts (team, kind pattern, minimum severity) go to which channels, with SLA and playbook.

Pure matching plus CRUD helpers; called from the alerting thread and console request threads.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy import Connection, delete, insert, select, update

from central.store.console_tables import routing_rules
from central.store.engine import Database
from policy_client.schema import Severity


class Channel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["console", "webhook", "email"]
    url: HttpUrl | None = None
    to: list[str] = Field(default_factory=list)


class Playbook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: list[str] = Field(default_factory=list)
    link: str = ""


class RuleSpec(BaseModel):
    """A rule as an admin types it (also the shape stored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    position: int = 100
    enabled: bool = True
    team: str | None = None
    kinds: list[str] = Field(default_factory=lambda: ["*"])
    """fnmatch patterns over alert kinds, such as `tamper.*` or `agent.offline`."""
    min_severity: Severity = Severity.info
    channels: list[Channel] = Field(default_factory=lambda: [Channel(type="console")])
    dedupe_seconds: int = Field(default=300, ge=0, le=7 * 86400)
    sla_minutes: int = Field(default=240, ge=1, le=30 * 1440)
    escalate_to: list[Channel] = Field(default_factory=list)
    playbook: Playbook = Field(default_factory=Playbook)


@dataclass(frozen=True)
class RoutingRule:
    id: int
    spec: RuleSpec
    created_at: datetime | None = field(default=None, compare=False)

    def matches(self, *, team: str, kind: str, severity: str) -> bool:
        s = self.spec
        if not s.enabled or (s.team is not None and s.team != team):
            return False
        try:
            if Severity(severity).rank < s.min_severity.rank:
                return False
        except ValueError:
            return False
        return any(fnmatch.fnmatchcase(kind, pattern) for pattern in s.kinds)


def first_match(rules: list[RoutingRule], *, team: str, kind: str, severity: str) -> RoutingRule | None:
    """Rules are tried by position then id; the first that matches routes the alert."""
    for rule in rules:
        if rule.matches(team=team, kind=kind, severity=severity):
            return rule
    return None


def _row_values(spec: RuleSpec) -> dict[str, Any]:
    dumped = spec.model_dump(mode="json")
    return {k: dumped[k] for k in dumped}


def load_rules(conn: Connection) -> list[RoutingRule]:
    rows = conn.execute(select(routing_rules).order_by(routing_rules.c.position, routing_rules.c.id)).all()
    out = []
    for r in rows:
        spec = RuleSpec.model_validate(
            {
                "name": r.name,
                "position": r.position,
                "enabled": r.enabled,
                "team": r.team,
                "kinds": r.kinds,
                "min_severity": r.min_severity,
                "channels": r.channels,
                "dedupe_seconds": r.dedupe_seconds,
                "sla_minutes": r.sla_minutes,
                "escalate_to": r.escalate_to,
                "playbook": r.playbook,
            }
        )
        out.append(RoutingRule(id=int(r.id), spec=spec, created_at=r.created_at))
    return out


def list_rules(db: Database) -> list[RoutingRule]:
    with db.read() as conn:
        return load_rules(conn)


def get_rule(conn: Connection, rule_id: int) -> RoutingRule | None:
    return next((r for r in load_rules(conn) if r.id == rule_id), None)


def save_rule(conn: Connection, spec: RuleSpec, *, now: datetime, rule_id: int | None = None) -> int:
    values = _row_values(spec)
    if rule_id is None:
        return int(conn.execute(insert(routing_rules).values(created_at=now, **values)).inserted_primary_key[0])  # type: ignore[index]
    conn.execute(update(routing_rules).where(routing_rules.c.id == rule_id).values(**values))
    return rule_id


def delete_rule(conn: Connection, rule_id: int) -> None:
    conn.execute(delete(routing_rules).where(routing_rules.c.id == rule_id))
