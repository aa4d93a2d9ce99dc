"""Machine-scope secret stores for the privileged service, with keyring's backend interface so
`policy_client.secrets.SecretStore(home, backend=machine_backend())` uses them unchanged.

Windows: DPAPI in machine scope over one file in %ProgramData%\\DeskWarden, a directory only SYSTEM and
Administrators may open. macOS: the System keychain. Linux: none; the service's root-only 0600 key file (the
SecretStore's own file) is the store. Called on the service's main thread at start-up and by enrolment; each
backend is thread-safe. OS calls sit behind small adapters so tests use fakes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from ctypes import wintypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent_app.core.win32api import Win32Functions, last_error, program_data_dir

log = logging.getLogger(__name__)

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
TRUSTED_OWNERS = frozenset({SYSTEM_SID, ADMINISTRATORS_SID})
DIRECTORY_SDDL = "O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
"""Owner Administrators (so a desk user who created the folder first loses it), a protected DACL (nothing inherited
from %ProgramData%, where Users may create and read) granting full control to SYSTEM and Administrators, inherited
by every file and folder inside."""
DPAPI_ENTROPY = b"DeskWarden machine secrets v1"
"""Secondary entropy: machine-scope DPAPI lets any local process decrypt a blob it can read, so the folder's ACL is
the protection; this only keeps other programs' blobs and ours apart."""
SYSTEM_KEYCHAIN = Path("/Library/Keychains/System.keychain")
SECURITY_TOOL = "/usr/bin/security"
KEYCHAIN_NOT_FOUND = 44
"""`security` exits 44 (errSecItemNotFound) when no item matches."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9._:@+-]{1,200}")


def _not_found(service: str, name: str) -> Exception:
    """keyring's PasswordDeleteError when keyring is importable (it is a dependency), else a LookupError."""
    try:
        from keyring.errors import PasswordDeleteError
    except ImportError:  # pragma: no cover - keyring is a dependency
        return LookupError(f"no secret {name!r} for {service!r}")
    error: Exception = PasswordDeleteError(f"no secret {name!r} for {service!r}")
    return error


# --- Windows: DPAPI (machine scope) over a file in a SYSTEM/Administrators-only folder ---------------------------


class Dpapi(Protocol):
    def protect(self, data: bytes, *, entropy: bytes) -> bytes:
        """CryptProtectData with CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN."""
        ...

    def unprotect(self, blob: bytes, *, entropy: bytes) -> bytes:
        """CryptUnprotectData; OSError when the blob is not ours or is damaged."""
        ...


class DirectoryAcl(Protocol):
    def restrict(self, directory: Path) -> None:
        """Apply DIRECTORY_SDDL (SetNamedSecurityInfoW); PermissionError when `directory` is a reparse point."""
        ...

    def take_ownership(self, path: Path) -> None:
        """Make Administrators the owner of a file just written (SetNamedSecurityInfoW, owner only), whatever the
        writer's default owner policy says."""
        ...

    def owner_sid(self, path: Path) -> str:
        """The owner of a file (GetNamedSecurityInfoW)."""
        ...


def default_secrets_file() -> Path:
    """%ProgramData%\\DeskWarden\\secrets.dpapi."""
    return program_data_dir() / "DeskWarden" / "secrets.dpapi"


class DpapiFileBackend:
    """Every secret of the machine in one DPAPI blob (JSON {"v": 1, "secrets": {service: {name: value}}}), rewritten
    atomically on each change. The folder is locked down before the first read or write; a file not owned by
    SYSTEM or Administrators was planted by someone else and is refused (PermissionError), never read."""

    def __init__(
        self, path: Path | None = None, *, dpapi: Dpapi | None = None, acl: DirectoryAcl | None = None
    ) -> None:
        self.path = path if path is not None else default_secrets_file()
        self._dpapi: Dpapi = dpapi if dpapi is not None else Win32Dpapi()
        self._acl: DirectoryAcl = acl if acl is not None else Win32DirectoryAcl()
        self._lock = threading.Lock()
        self._restricted = False

    def get_password(self, service: str, name: str) -> str | None:
        with self._lock:
            return self._load().get(service, {}).get(name)

    def set_password(self, service: str, name: str, value: str) -> None:
        with self._lock:
            data = self._load()
            data.setdefault(service, {})[name] = value
            self._store(data)

    def delete_password(self, service: str, name: str) -> None:
        with self._lock:
            data = self._load()
            if name not in data.get(service, {}):
                raise _not_found(service, name)
            del data[service][name]
            if not data[service]:
                del data[service]
            self._store(data)

    def _ensure_directory(self) -> None:
        if self._restricted:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acl.restrict(self.path.parent)
        self._restricted = True

    def _load(self) -> dict[str, dict[str, str]]:
        self._ensure_directory()
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        owner = self._acl.owner_sid(self.path)
        if owner not in TRUSTED_OWNERS:
            raise PermissionError(
                errno.EACCES, f"{self.path} belongs to {owner}, not SYSTEM or Administrators; refusing to use it"
            )
        raw = self._dpapi.unprotect(blob, entropy=DPAPI_ENTROPY)
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{self.path} does not hold DeskWarden secrets") from exc
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if not isinstance(secrets, dict):
            raise ValueError(f"{self.path} does not hold DeskWarden secrets")
        return {
            str(service): {str(key): str(value) for key, value in names.items()}
            for service, names in secrets.items()
            if isinstance(names, dict)
        }

    def _store(self, data: dict[str, dict[str, str]]) -> None:
        self._ensure_directory()
        blob = self._dpapi.protect(json.dumps({"v": 1, "secrets": data}).encode("utf-8"), entropy=DPAPI_ENTROPY)
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)  # inherits the folder's DACL
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            self._acl.take_ownership(Path(tmp))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class _Blob(ctypes.Structure):
    _fields_ = (("cbData", wintypes.DWORD), ("pbData", ctypes.c_void_p))


_P = ctypes.c_void_p
_D = wintypes.DWORD
_B = wintypes.BOOL
_SIGNATURES: dict[str, tuple[str, Any, tuple[Any, ...]]] = {
    "CryptProtectData": ("crypt32", _B, (_P, wintypes.LPCWSTR, _P, _P, _P, _D, _P)),
    "CryptUnprotectData": ("crypt32", _B, (_P, _P, _P, _P, _P, _D, _P)),
    "LocalFree": ("kernel32", _P, (_P,)),
    "ConvertStringSecurityDescriptorToSecurityDescriptorW": ("advapi32", _B, (wintypes.LPCWSTR, _D, _P, _P)),
    "GetSecurityDescriptorOwner": ("advapi32", _B, (_P, _P, _P)),
    "GetSecurityDescriptorDacl": ("advapi32", _B, (_P, _P, _P, _P)),
    "SetNamedSecurityInfoW": ("advapi32", _D, (wintypes.LPWSTR, ctypes.c_int, _D, _P, _P, _P, _P)),
    "GetNamedSecurityInfoW": ("advapi32", _D, (wintypes.LPCWSTR, ctypes.c_int, _D, _P, _P, _P, _P, _P)),
    "ConvertSidToStringSidW": ("advapi32", _B, (_P, _P)),
}
CRYPTPROTECT_UI_FORBIDDEN = 0x1
CRYPTPROTECT_LOCAL_MACHINE = 0x4
SE_FILE_OBJECT = 1
OWNER_SECURITY_INFORMATION = 0x1
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
FILE_ATTRIBUTE_REPARSE_POINT = 0x400


_win = Win32Functions(_SIGNATURES)
_last_error = last_error


def _error(what: str, code: int | None = None) -> OSError:
    code = _last_error() if code is None else code
    return OSError(None, f"{what} failed (Windows error {code})", None, code)


def _blob(data: bytes) -> tuple[_Blob, Any]:
    """A DATA_BLOB over a copy of `data`; the buffer is returned too, to keep it alive for the call."""
    buffer = ctypes.create_string_buffer(data, len(data))
    return _Blob(len(data), ctypes.addressof(buffer)), buffer


def _take_blob(blob: _Blob) -> bytes:
    try:
        return ctypes.string_at(blob.pbData, blob.cbData)
    finally:
        _win("LocalFree")(blob.pbData)


class Win32Dpapi:
    """`Dpapi` over crypt32 through ctypes."""

    def protect(self, data: bytes, *, entropy: bytes) -> bytes:
        plain, plain_buffer = _blob(data)
        extra, extra_buffer = _blob(entropy)
        out = _Blob()
        ok = _win("CryptProtectData")(
            ctypes.byref(plain),
            "DeskWarden",
            ctypes.byref(extra),
            None,
            None,
            CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN,
            ctypes.byref(out),
        )
        del plain_buffer, extra_buffer
        if not ok:
            raise _error("CryptProtectData")
        return _take_blob(out)

    def unprotect(self, blob: bytes, *, entropy: bytes) -> bytes:
        sealed, sealed_buffer = _blob(blob)
        extra, extra_buffer = _blob(entropy)
        out = _Blob()
        ok = _win("CryptUnprotectData")(
            ctypes.byref(sealed), None, ctypes.byref(extra), None, None, CRYPTPROTECT_UI_FORBIDDEN, ctypes.byref(out)
        )
        del sealed_buffer, extra_buffer
        if not ok:
            raise _error("CryptUnprotectData")
        return _take_blob(out)


class Win32DirectoryAcl:
    """`DirectoryAcl` over advapi32 through ctypes."""

    def restrict(self, directory: Path) -> None:
        if sys.platform == "win32":
            # A desk user may have made the folder a junction to one they control; setting the ACL would then
            # follow it and the secrets would land in their folder.
            if os.lstat(directory).st_file_attributes & FILE_ATTRIBUTE_REPARSE_POINT:
                raise PermissionError(errno.EACCES, f"{directory} is a reparse point (junction or link); refusing it")
        self._apply(directory, DIRECTORY_SDDL, dacl=True)

    def take_ownership(self, path: Path) -> None:
        self._apply(path, DIRECTORY_SDDL, dacl=False)

    def _apply(self, path: Path, sddl: str, *, dacl: bool) -> None:
        """Set the owner (and with `dacl`, the protected DACL) of `path` from an SDDL string."""
        descriptor = ctypes.c_void_p()
        if not _win("ConvertStringSecurityDescriptorToSecurityDescriptorW")(sddl, 1, ctypes.byref(descriptor), None):
            raise _error("ConvertStringSecurityDescriptorToSecurityDescriptor")
        try:
            owner, acl = ctypes.c_void_p(), ctypes.c_void_p()
            present, defaulted = wintypes.BOOL(), wintypes.BOOL()
            if not _win("GetSecurityDescriptorOwner")(descriptor, ctypes.byref(owner), ctypes.byref(defaulted)):
                raise _error("GetSecurityDescriptorOwner")
            if not _win("GetSecurityDescriptorDacl")(
                descriptor, ctypes.byref(present), ctypes.byref(acl), ctypes.byref(defaulted)
            ):
                raise _error("GetSecurityDescriptorDacl")
            which = OWNER_SECURITY_INFORMATION
            if dacl:
                which |= DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION
            code = _win("SetNamedSecurityInfoW")(
                str(path), SE_FILE_OBJECT, which, owner, None, acl if dacl else None, None
            )
            if code:
                raise _error(f"SetNamedSecurityInfo({path})", int(code))
        finally:
            _win("LocalFree")(descriptor)

    def owner_sid(self, path: Path) -> str:
        owner, descriptor = ctypes.c_void_p(), ctypes.c_void_p()
        which = OWNER_SECURITY_INFORMATION
        code = _win("GetNamedSecurityInfoW")(
            str(path), SE_FILE_OBJECT, which, ctypes.byref(owner), None, None, None, ctypes.byref(descriptor)
        )
        if code:
            raise _error(f"GetNamedSecurityInfo({path})", int(code))
        try:
            text = ctypes.c_void_p()
            if not _win("ConvertSidToStringSidW")(owner, ctypes.byref(text)):
                raise _error("ConvertSidToStringSid")
            try:
                return ctypes.wstring_at(text.value) if text.value else ""
            finally:
                _win("LocalFree")(text)
        finally:
            _win("LocalFree")(descriptor)


# --- macOS: the System keychain ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


KeychainRunner = Callable[[Sequence[str], str | None], ToolResult]
"""Runs `security` with optional standard input; never raises for a non-zero exit."""


def run_security(argv: Sequence[str], stdin: str | None) -> ToolResult:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolResult(127, "", f"{type(exc).__name__}: {exc}")
    return ToolResult(done.returncode, done.stdout, done.stderr)


class SystemKeychainBackend:
    """Generic passwords in /Library/Keychains/System.keychain (root may write it; the items' ACL trusts the
    `security` tool that created them). A value is passed to `security -i` on standard input, hex-encoded, never on
    a command line, where every local user's `ps` would see it."""

    def __init__(self, *, keychain: Path = SYSTEM_KEYCHAIN, runner: KeychainRunner = run_security) -> None:
        self.keychain = keychain
        self._run = runner
        self._lock = threading.Lock()

    def get_password(self, service: str, name: str) -> str | None:
        _check_names(service, name)
        argv = [SECURITY_TOOL, "find-generic-password", "-s", service, "-a", name, "-w", str(self.keychain)]
        with self._lock:
            result = self._run(argv, None)
        if result.returncode == KEYCHAIN_NOT_FOUND:
            return None
        if result.returncode != 0:
            raise OSError(f"security find-generic-password failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.removesuffix("\n")

    def set_password(self, service: str, name: str, value: str) -> None:
        _check_names(service, name)
        if not value.isprintable():
            raise ValueError("keychain secrets must be printable text (find-generic-password -w prints others as hex)")
        command = (
            f"add-generic-password -U -s {service} -a {name} -l DeskWarden "
            f"-X {value.encode('utf-8').hex()} {self.keychain}\n"
        )
        with self._lock:
            result = self._run([SECURITY_TOOL, "-i"], command)
        # `security -i` may exit 0 although its command failed: the read-back decides.
        if result.returncode != 0 or self.get_password(service, name) != value:
            raise OSError(f"could not store {name!r} in {self.keychain} ({result.returncode}): {result.stderr.strip()}")

    def delete_password(self, service: str, name: str) -> None:
        _check_names(service, name)
        argv = [SECURITY_TOOL, "delete-generic-password", "-s", service, "-a", name, str(self.keychain)]
        with self._lock:
            result = self._run(argv, None)
        if result.returncode == KEYCHAIN_NOT_FOUND:
            raise _not_found(service, name)
        if result.returncode != 0:
            raise OSError(f"security delete-generic-password failed ({result.returncode}): {result.stderr.strip()}")


def _check_names(service: str, name: str) -> None:
    """Service and account names go into `security -i`'s command line: plain tokens only."""
    for value in (service, name):
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(f"unsupported keychain item name {value!r}")


# --- the one place that chooses --------------------------------------------------------------------------------


def machine_backend(*, platform: str = sys.platform) -> object | None:
    """The machine-scope store for this OS: a keyring-style backend, or None (Linux: the service's root-only key
    file). Creating a backend touches nothing; the first get or set does."""
    if platform == "win32":
        return DpapiFileBackend()
    if platform == "darwin":
        return SystemKeychainBackend()
    return None
