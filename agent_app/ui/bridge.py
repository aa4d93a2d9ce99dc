"""Carries the runtime's listener callbacks (any thread) onto the GUI thread as queued Qt signals.

Constructed on the GUI thread; its `on_*` methods are the callbacks handed to the port and may run anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from agent_app.core.pipeline import Notice
from agent_app.core.ports import AgentPort
from agent_app.core.status import AgentStatus
from policy_client.schema import PolicyDocument

if TYPE_CHECKING:  # requests stays out of the helper unless --supervisor asks for the alert stream
    from agent_app.core.supervisor_alerts import SupervisorAlert


class PortBridge(QObject):
    """Signals are emitted from worker threads; Qt queues them to slots living on the GUI thread."""

    notice = Signal(object)
    status = Signal(object)
    policy = Signal(object)
    alert = Signal(object)

    def attach(self, port: AgentPort) -> None:
        port.add_notice_listener(self.on_notice)
        port.add_status_listener(self.on_status)
        port.add_policy_listener(self.on_policy)

    def on_notice(self, notice: Notice) -> None:
        self.notice.emit(notice)

    def on_status(self, status: AgentStatus) -> None:
        self.status.emit(status)

    def on_policy(self, policy: PolicyDocument) -> None:
        self.policy.emit(policy)

    def on_alert(self, alert: SupervisorAlert) -> None:
        self.alert.emit(alert)
