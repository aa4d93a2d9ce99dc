"""How the console writes a time: a `<time datetime="...">` element whose text is UTC, which `static/localtime.js`
rewrites into the viewer's local time and zone (the UTC value stays in the markup and in the element's title).

Pure template filter; any thread.
"""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape


def when(value: datetime | str | None, *, seconds: bool = False, empty: str = "") -> Markup:
    """`value` (an aware datetime or an ISO 8601 string) as a `<time>` element; `empty` when there is none."""
    if value is None or value == "":
        return escape(empty)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return escape(value)
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    stamp = moment.isoformat().replace("+00:00", "Z")
    precision = "s" if seconds else "m"
    return Markup('<time datetime="{}" data-precision="{}">{} UTC</time>').format(stamp, precision, shown)
