"""Who is asking: a console user (session or personal token) or a read-API token, and what they may see.

Immutable values; any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "supervisor", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "supervisor", "auditor")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    teams: frozenset[str] = frozenset()
    """A supervisor's teams; ignored for admins and auditors, who see every team."""
    user_id: int | None = None

    @property
    def all_teams(self) -> bool:
        return self.role != "supervisor"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_act(self) -> bool:
        """Admins and supervisors change things; auditors only read."""
        return self.role in ("admin", "supervisor")

    def sees(self, team: str | None) -> bool:
        return self.all_teams or (team is not None and team in self.teams)

    def team_filter(self) -> frozenset[str] | None:
        """None for every team, else the set of teams to restrict queries to."""
        return None if self.all_teams else self.teams


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise ValueError(f"role must be one of {', '.join(ROLES)}")
