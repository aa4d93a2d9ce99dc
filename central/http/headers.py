"""Security headers on every answer: Content-Security-Policy, frame-ancestors / X-Frame-Options, nosniff.

`SecurityHeaders` is ASGI middleware (on the event loop); the policy is computed once at import from the
console templates, so an inline `onsubmit`/`style` attribute written in a template keeps working while
injected script or markup does not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEMPLATES = Path(__file__).resolve().parents[1] / "console" / "templates"
_HANDLER_RE = re.compile(r'\son[a-z]+="([^"]*)"')
_STYLE_RE = re.compile(r'\sstyle="([^"]*)"')

API_DOCS_PATHS = ("/docs", "/redoc")
"""FastAPI's interactive docs load Swagger UI / ReDoc from jsDelivr and start them with an inline script."""


def _hash_source(value: str) -> str:
    digest = hashlib.sha256(html.unescape(value).encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def inline_attribute_hashes(templates: Iterable[Path], pattern: re.Pattern[str]) -> list[str]:
    """CSP hash sources for the static inline attributes (event handlers or styles) written in `templates`.

    Values holding template expressions are skipped: they differ per page, and a hash cannot allow them.
    """
    found: set[str] = set()
    for path in templates:
        for value in pattern.findall(path.read_text(encoding="utf-8")):
            if "{{" not in value and "{%" not in value:
                found.add(_hash_source(value))
    return sorted(found)


def console_policy(templates_dir: Path = TEMPLATES) -> str:
    templates = sorted(templates_dir.glob("*.html"))
    scripts = inline_attribute_hashes(templates, _HANDLER_RE)
    styles = inline_attribute_hashes(templates, _STYLE_RE)
    script_src = " ".join(["'self'", *(["'unsafe-hashes'", *scripts] if scripts else [])])
    style_src = " ".join(["'self'", *(["'unsafe-hashes'", *styles] if styles else [])])
    return (
        f"default-src 'self'; script-src {script_src}; style-src {style_src}; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

CONSOLE_POLICY = console_policy()


class SecurityHeaders:
    """Adds the headers to every HTTP answer that does not already set them."""

    def __init__(self, app: ASGIApp, *, policy: str = CONSOLE_POLICY) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        policy = DOCS_POLICY if path.startswith(API_DOCS_PATHS) else self.policy
        extra = [
            (b"content-security-policy", policy.encode("ascii")),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
