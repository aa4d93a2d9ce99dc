"""Supervisor alert notifications: a tray balloon per alert; clicking it opens the alert in the console.

GUI thread only; alerts arrive from the stream thread through `PortBridge.alert` (a queued signal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QDesktopServices

from agent_app.core import texts
from agent_app.ui.tray import TrayIconHost

if TYPE_CHECKING:  # requests stays out of the helper unless --supervisor asks for the alert stream
    from agent_app.core.supervisor_alerts import SupervisorAlert

log = logging.getLogger(__name__)

CRITICAL = frozenset({"high", "critical"})


class SupervisorNotifier(QObject):
    def __init__(
        self,
        host: TrayIconHost,
        *,
        open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._host = host
        self._open_url = open_url
        self.last: SupervisorAlert | None = None
        self.shown = 0
        host.message_clicked.connect(self.open_last)

    def show(self, alert: SupervisorAlert) -> None:
        self.last = alert
        title = texts.ALERT_TITLE.format(severity=alert.severity.capitalize(), kind=texts.kind_label(alert.kind))
        body = texts.ALERT_BODY.format(team=alert.team or "?", device=alert.device_id or "?")
        if self._host.show_message(title, body, level="critical" if alert.severity in CRITICAL else "warning"):
            self.shown += 1

    def open_last(self) -> None:
        alert = self.last
        if alert is None or not alert.url:
            return
        url = QUrl(alert.url)
        if url.scheme() not in ("https", "http"):
            log.warning("supervisor alert %s carries a non-web URL; not opening it", alert.id)
            return
        self._open_url(url)
