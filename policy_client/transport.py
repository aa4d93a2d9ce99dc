"""HTTPS transport to the central endpoint: one requests.Session, TLS always verified, gzip bodies.

A `Transport` belongs to one thread at a time (the uploader thread, or the CLI during enrolment). The uploader
hands each event post to an `uploader-post` thread and waits for each before it uses the transport again; `compress`
holds no state and may run on the uploader thread meanwhile.
"""

from __future__ import annotations

import ipaddress
import logging
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from policy_client.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
DEFAULT_GZIP_LEVEL = 1
"""Level 1 compresses event JSON about 8x at a fraction of the CPU of level 6."""


class InsecureUrlError(ValueError):
    """The endpoint URL is not acceptable (not https, and not loopback plain http, or malformed)."""


class TransportError(Exception):
    """The request did not get an HTTP answer: connection refused or reset, DNS failure, timeout."""


class TlsError(TransportError):
    """The TLS handshake or certificate verification failed."""


def agent_version() -> str:
    try:
        return metadata.version("deskwarden")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str) -> str:
    """Return the endpoint base URL without a trailing slash, or raise InsecureUrlError saying why."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InsecureUrlError(f"endpoint URL {text!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("https", "http"):
        raise InsecureUrlError(f"endpoint URL {text!r} must start with https:// (got scheme {scheme or 'none'!r})")
    if not host:
        raise InsecureUrlError(f"endpoint URL {text!r} has no host name")
    if parts.username is not None or parts.password is not None:
        raise InsecureUrlError("endpoint URL must not contain a user name or password")
    if parts.query or parts.fragment:
        raise InsecureUrlError(f"endpoint URL {text!r} must not carry a query or fragment")
    if scheme == "http" and not is_loopback_host(host):
        raise InsecureUrlError(
            f"refusing plain http:// to {host}: DeskWarden sends events only over https "
            "(plain http is allowed only to loopback: localhost, 127.0.0.0/8, ::1)"
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


def gzip_bytes(body: bytes, *, level: int = DEFAULT_GZIP_LEVEL) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31 = gzip container
    return compressor.compress(body) + compressor.flush()


class Transport:
    """HTTP calls to one endpoint with the device credential as a bearer token.

    Redirects are never followed (a redirect could downgrade to plain http or leak the credential).
    Neither the credential nor any body is ever logged.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credential: str | None = None,
        ca_bundle: str | Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        gzip_level: int = DEFAULT_GZIP_LEVEL,
        user_agent: str | None = None,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise FileNotFoundError(f"CA bundle {ca_bundle} does not exist")
        self._verify: bool | str = str(ca_bundle) if ca_bundle is not None else True
        self._timeout = (connect_timeout, read_timeout)
        self._gzip_level = gzip_level
        self._credential = credential
        self._session = requests.Session()
        self._session.headers.update(
            {
                "User-Agent": user_agent or f"deskwarden/{agent_version()}",
                "X-DeskWarden-Schema": str(SCHEMA_VERSION),
                "Accept": "application/json",
            }
        )

    def __repr__(self) -> str:  # never shows the credential
        return f"Transport({self.base_url!r}, credential={'set' if self._credential else 'none'})"

    @property
    def has_credential(self) -> bool:
        return bool(self._credential)

    def set_credential(self, credential: str | None) -> None:
        self._credential = credential

    def post_json(
        self, path: str, body: bytes, *, compress: bool = True, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """POST already-serialised JSON, gzip-compressed unless `compress` is False."""
        if compress:
            return self.post_gzipped(path, self.compress(body), headers=headers)
        send_headers = {"Content-Type": "application/json"}
        if headers:
            send_headers.update(headers)
        return self._request("POST", path, data=body, headers=send_headers)

    def compress(self, body: bytes) -> bytes:
        """`body` gzip-compressed at this transport's level, for `post_gzipped` (any thread: no state)."""
        return gzip_bytes(body, level=self._gzip_level)

    def post_gzipped(self, path: str, gzipped: bytes, *, headers: dict[str, str] | None = None) -> requests.Response:
        """POST JSON that `compress` already gzipped (the uploader compresses the next batch while one is in flight)."""
        send_headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if headers:
            send_headers.update(headers)
        return self._request("POST", path, data=gzipped, headers=send_headers)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> requests.Response:
        return self._request("GET", path, headers=dict(headers or {}))

    def stream(
        self, path: str, *, headers: dict[str, str] | None = None, params: list[tuple[str, str]] | None = None
    ) -> requests.Response:
        """A long-lived GET read as it arrives (the supervisors' alert stream); the caller closes the response."""
        return self._request("GET", path, headers=dict(headers or {}), params=params or [], stream=True)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        if self._credential:
            headers["Authorization"] = f"Bearer {self._credential}"
        url = self.base_url + path
        try:
            return self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            log.debug("TLS failure on %s %s", method, url)
            raise TlsError(f"TLS verification with {self.base_url} failed: {_short(exc)}") from None
        except requests.exceptions.Timeout:
            raise TransportError(f"{method} {url} timed out") from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"{method} {url} failed: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
