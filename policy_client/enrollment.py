"""Enrolment: trade a team's enrolment token for a device id, a device credential and the policy key.

Called once from the CLI (`deskwarden enroll`) or the demo launcher, on the calling thread.
"""

from __future__ import annotations

import base64
import getpass
import json
import logging
import platform
import socket
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from policy_client.agent_config import CONFIG_FILENAME, AgentConfig, save_config
from policy_client.schema import EnrollRequest, EnrollResponse
from policy_client.transport import InsecureUrlError, TlsError, Transport, TransportError, agent_version

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "device_credential"
"""Name of the device credential in the secret store."""


class CredentialStore(Protocol):
    """The part of policy_client.secrets.SecretStore that enrolment needs."""

    def set(self, name: str, value: str) -> None: ...


class EnrollmentError(Exception):
    """Enrolment failed; the message says why and what to do, and never contains the token."""


def enroll(
    server_url: str,
    token: str,
    *,
    home: Path,
    store: CredentialStore,
    chain_key: bytes,
    ca_bundle: str | Path | None = None,
    config_file: Path | None = None,
    hostname: str | None = None,
    os_name: str | None = None,
    user: str | None = None,
    transport: Transport | None = None,
) -> AgentConfig:
    """POST /v1/enroll, store the credential, save the config (in that order), return the config.

    The config file is written last, so its presence means the agent is fully enrolled.
    `transport` is for tests and callers that already hold one; it is not closed here.
    """
    target = config_file if config_file is not None else home / CONFIG_FILENAME
    if len(chain_key) < 16:
        raise ValueError("chain key is too short")
    request = EnrollRequest(
        token=_checked_token(token),
        hostname=(hostname if hostname is not None else socket.gethostname())[:255],
        os=(os_name if os_name is not None else f"{platform.system()} {platform.release()}".strip())[:64],
        user=(user if user is not None else _login_name())[:256],
        agent_version=agent_version()[:64],
        chain_key=base64.b64encode(chain_key).decode(),
    )
    own_transport = transport is None
    try:
        http = transport if transport is not None else Transport(server_url, ca_bundle=ca_bundle)
    except InsecureUrlError as exc:
        raise EnrollmentError(str(exc)) from None
    except FileNotFoundError as exc:
        raise EnrollmentError(str(exc)) from None
    try:
        response = http.post_json("/v1/enroll", request.model_dump_json().encode(), compress=False)
    except TlsError as exc:
        raise EnrollmentError(
            f"{exc}. If the endpoint uses a private certificate authority, pass its CA bundle (--ca-bundle)."
        ) from None
    except TransportError as exc:
        raise EnrollmentError(f"cannot reach the endpoint at {http.base_url}: {exc}") from None
    finally:
        if own_transport:
            http.close()

    status = response.status_code
    detail = _detail(response.content)
    if status == 401:
        raise EnrollmentError(
            "the endpoint refused the enrolment token: it is wrong, expired or already used "
            f"(ask an admin for a new one with `deskwarden admin enroll-token`){_suffix(detail)}"
        )
    if status == 403:
        raise EnrollmentError(f"the endpoint refused enrolment (403){_suffix(detail)}")
    if status >= 400:
        raise EnrollmentError(f"enrolment failed with HTTP {status}{_suffix(detail)}")
    if status not in (200, 201):
        raise EnrollmentError(f"unexpected HTTP {status} from {http.base_url}/v1/enroll")
    try:
        answer = EnrollResponse.model_validate_json(response.content)
    except ValidationError:
        raise EnrollmentError("the endpoint's enrolment answer is not a valid EnrollResponse") from None
    try:
        config = AgentConfig(
            server_url=http.base_url,
            device_id=answer.device_id,
            team=answer.team,
            ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle is not None else None,
            policy_key_id=answer.policy_key_id,
            policy_public_key=answer.policy_public_key,
        )
    except ValidationError as exc:
        raise EnrollmentError(f"the endpoint's enrolment answer is unusable: {exc.errors()[0]['msg']}") from None
    if not answer.credential:
        raise EnrollmentError("the endpoint's enrolment answer carries no device credential")
    store.set(CREDENTIAL_NAME, answer.credential)
    save_config(target, config)
    log.info("enrolled as device %s in team %s with %s", config.device_id, config.team, config.server_url)
    return config


def _checked_token(token: str) -> str:
    cleaned = token.strip()
    if not 8 <= len(cleaned) <= 256:
        raise EnrollmentError("the enrolment token looks wrong (expected 8 to 256 characters)")
    return cleaned


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return ""


def _detail(content: bytes) -> str:
    """The endpoint's short `detail` message, if the body is an ErrorBody-like JSON object."""
    try:
        data = json.loads(content[:4096])
    except (ValueError, RecursionError):
        return ""
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        text: str = data["detail"]
        return text[:200]
    return ""


def _suffix(detail: str) -> str:
    return f": {detail}" if detail else ""
