"""Text from devices and users made safe where it lands: one line in the server log, inert in chat messages.

Pure functions and a logging filter; any thread. Agent-supplied names (hostname, user, team) are not
trusted: a hostname with a newline must not forge a log line, and one with Slack or Teams markup must not
mention @channel or plant a link in a webhook message.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_CHAT_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]"})
MAX_CHAT_FIELD = 200


def one_line(text: str) -> str:
    """Control characters (line breaks included) shown as escapes, so the text stays on its line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def chat_text(value: object, *, max_length: int = MAX_CHAT_FIELD) -> str:
    """A value for a Slack/Teams message: one line, `&<>` as entities (Slack's own escaping; no `<!channel>`,
    `<@U…>` or `<url|label>`), brackets escaped (no markdown links), at most `max_length` characters."""
    text = one_line(str(value)).replace("\t", " ")
    if len(text) > max_length:
        text = text[: max_length - 1] + "…"
    return text.translate(_CHAT_MARKUP)


class SingleLineLogs(logging.Filter):
    """Keeps each log record on one line: a message whose arguments carry line breaks is escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: let logging report it as usual
        if _CONTROL.search(message):
            record.msg = one_line(message)
            record.args = None
        return True


def install_single_line_logs(logger: logging.Logger | None = None) -> None:
    """Add `SingleLineLogs` to the handlers of `logger` (the root logger) once; called where the server starts."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SingleLineLogs) for f in handler.filters):
            handler.addFilter(SingleLineLogs())
