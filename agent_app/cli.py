"""The `deskwarden` command line: argument parsing only; each sub-command calls one function elsewhere.

Runs on the main thread of whatever process was started.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent_app import __version__

Handler = Callable[[argparse.Namespace], int]


def _duration(text: str) -> timedelta:
    """`90s`, `15m`, `8h`, `7d` or a plain number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30m, 8h, 7d)") from None


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, help="endpoint state directory")
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the data dir)")


def _settings(args: argparse.Namespace) -> Any:
    from central.settings import ServerSettings, default_data_dir

    kwargs: dict[str, Any] = {"data_dir": args.data_dir or default_data_dir(), "db_url": args.db}
    for name in ("host", "port", "workers", "forwarded_allow_ips"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    return ServerSettings(**kwargs)


# --- handlers: one call each --------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent_app.demo import run_demo

    return run_demo(state=args.state, headless=args.headless, port=args.port)


def _cmd_server(args: argparse.Namespace) -> int:
    from central.commands import run_server

    run_server(_settings(args))
    return 0


def _cmd_enroll_token(args: argparse.Namespace) -> int:
    from central.commands import issue_enroll_token

    print(issue_enroll_token(_settings(args), args.team, args.ttl))
    return 0


def _cmd_api_token(args: argparse.Namespace) -> int:
    from central.commands import create_api_token

    print(create_api_token(_settings(args), args.name, args.role, ttl=args.ttl))
    return 0


def _cmd_unlock_token(args: argparse.Namespace) -> int:
    from central.commands import issue_unlock_token

    print(issue_unlock_token(_settings(args), args.device_id, scope=args.scope, minutes=args.minutes, ttl=args.ttl))
    return 0


def _cmd_revoke_device(args: argparse.Namespace) -> int:
    from central.commands import revoke_device

    if not revoke_device(_settings(args), args.device_id):
        print(f"deskwarden: no active device {args.device_id}", file=sys.stderr)
        return 1
    return 0


def _cmd_revoke_token(args: argparse.Namespace) -> int:
    from central.commands import revoke_enroll_token

    token = sys.stdin.readline().strip() if args.token in ("-",) else args.token  # "-" keeps it out of ps
    if not revoke_enroll_token(_settings(args), token):
        print("deskwarden: no such active enrolment token", file=sys.stderr)
        return 1
    return 0


def _cmd_create_user(args: argparse.Namespace) -> int:
    from central.commands import create_user

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    create_user(_settings(args), args.name, role=args.role, teams=args.team or [], password=password)
    return 0


def _cmd_list_tokens(args: argparse.Namespace) -> int:
    from central.commands import list_tokens

    print("kind\tid\tname/user\trole\tstate\tcreated (UTC)\texpires (UTC)")
    for line in list_tokens(_settings(args)):
        print(line)
    return 0


def _cmd_revoke_api_token(args: argparse.Namespace) -> int:
    from central.commands import revoke_api_token

    if not revoke_api_token(_settings(args), args.token_id):
        print(f"deskwarden: no active API token {args.token_id}", file=sys.stderr)
        return 1
    return 0


def _cmd_revoke_user_token(args: argparse.Namespace) -> int:
    from central.commands import revoke_user_token

    if not revoke_user_token(_settings(args), args.token_id):
        print(f"deskwarden: no active personal token {args.token_id}", file=sys.stderr)
        return 1
    return 0


def _cmd_reset_password(args: argparse.Namespace) -> int:
    from central.commands import reset_password

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    try:
        reset_password(_settings(args), args.name, password=password)
    except LookupError as exc:
        print(f"deskwarden: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from central.commands import publish_policy

    print(publish_policy(_settings(args), args.file.read_bytes(), author=args.author))
    return 0


def _cmd_enroll(args: argparse.Namespace) -> int:
    from agent_app.core.enrol import enrol_here

    device_id = enrol_here(args.url, args.token, ca_bundle=args.ca, home=args.state_dir, machine=True)
    print(device_id)
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from agent_app.run import run_service

    return run_service(state_dir=args.state_dir, socket_path=args.socket, unprotected=args.unprotected)


def _cmd_agent(args: argparse.Namespace) -> int:
    from agent_app.run import run_agent

    return run_agent(
        socket_path=args.socket, headless=args.headless, supervisor=args.supervisor, with_service=args.with_service
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from agent_app.core.status import print_status

    return print_status(as_json=args.json, state_dir=args.state_dir, socket_path=args.socket)


def _cmd_scan(args: argparse.Namespace) -> int:
    from collectors.pii.report import run_scan

    return run_scan(args.file, as_json=args.json)


def _cmd_install(args: argparse.Namespace) -> int:
    from agent_app.core.privilege import privileged
    from agent_app.run import UNPROTECTED_WARNING

    if privileged():
        from agent_app.core.machine_install import install_machine

        return install_machine(server=args.server, token=args.token, ca=args.ca)
    from agent_app.core.autostart import install
    from agent_app.core.paths import login_name

    print(UNPROTECTED_WARNING.format(user=login_name()), file=sys.stderr)
    return install(server=args.server, token=args.token, ca=args.ca, all_users=args.all_users)


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from agent_app.core.autostart import uninstall
    from agent_app.core.privilege import privileged

    if privileged():
        from agent_app.core.machine_install import uninstall_machine

        return uninstall_machine(unlock_token=args.unlock_token, state_dir=args.state_dir)
    return uninstall(unlock_token=args.unlock_token, all_users=args.all_users, home=args.state_dir)


def _cmd_selftest(args: argparse.Namespace) -> int:
    from agent_app.core.paths import state_dir
    from agent_app.core.selftest import run_selftest

    return run_selftest(state_dir())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskwarden", description="DeskWarden desktop compliance monitor")
    parser.add_argument("--version", action="version", version=f"deskwarden {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a local endpoint and an enrolled agent on this machine")
    demo.add_argument("--state", type=Path, default=None, help="demo state directory (default: ./.deskwarden-demo)")
    demo.add_argument("--headless", action="store_true", help="no tray even when a display exists")
    demo.add_argument("--port", type=int, default=0, help="endpoint port (default: a free one)")
    demo.set_defaults(handler=_cmd_demo)

    server = sub.add_parser("server", help="run the central endpoint")
    _server_args(server)
    server.add_argument("--host", default=None)
    server.add_argument("--port", type=int, default=None)
    server.add_argument("--workers", type=int, default=None, help="API worker processes (PostgreSQL only)")
    server.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="ADDRESSES",
        help="comma-separated addresses or networks of the reverse proxy whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed ('*' for any; default 127.0.0.1,::1 or $FORWARDED_ALLOW_IPS); "
        "login throttling counts failures per client address taken from there",
    )
    server.set_defaults(handler=_cmd_server)

    admin = sub.add_parser("admin", help="endpoint administration").add_subparsers(dest="admin", required=True)
    token = admin.add_parser("enroll-token", help="print an enrolment token for a team")
    _server_args(token)
    token.add_argument("--team", required=True)
    token.add_argument("--ttl", type=_duration, default=timedelta(days=7))
    token.set_defaults(handler=_cmd_enroll_token)
    api = admin.add_parser("api-token", help="print a token for the read API")
    _server_args(api)
    api.add_argument("name")
    api.add_argument("--role", choices=["admin", "auditor"], required=True)
    api.add_argument("--ttl", type=_duration, default=None, help="expire after this long, e.g. 90d (default: never)")
    api.set_defaults(handler=_cmd_api_token)
    unlock = admin.add_parser("unlock-code", help="print a signed unlock token for one device (quit/uninstall)")
    _server_args(unlock)
    unlock.add_argument("device_id")
    unlock.add_argument("--scope", choices=["quit", "uninstall"], default="quit")
    unlock.add_argument("--minutes", type=int, default=60, help="minutes the helper may stay off (quit tokens)")
    unlock.add_argument("--ttl", type=_duration, default=timedelta(hours=8), help="how long the token can be used")
    unlock.set_defaults(handler=_cmd_unlock_token)
    revoke = admin.add_parser("revoke-device", help="refuse a device's credential (lost or re-imaged PC)")
    _server_args(revoke)
    revoke.add_argument("device_id")
    revoke.set_defaults(handler=_cmd_revoke_device)
    revoke_token = admin.add_parser("revoke-enroll-token", help="refuse an enrolment token before it expires")
    _server_args(revoke_token)
    revoke_token.add_argument("token", help="the token, or - to read it from standard input")
    revoke_token.set_defaults(handler=_cmd_revoke_token)
    user = admin.add_parser("create-user", help="create a console user")
    _server_args(user)
    user.add_argument("name")
    user.add_argument("--role", choices=["admin", "supervisor", "auditor"], required=True)
    user.add_argument("--team", action="append", help="team a supervisor looks after (repeatable)")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(handler=_cmd_create_user)
    list_tokens = admin.add_parser("list-tokens", help="list API and personal tokens with their state and expiry")
    _server_args(list_tokens)
    list_tokens.set_defaults(handler=_cmd_list_tokens)
    revoke_api = admin.add_parser("revoke-api-token", help="refuse a read-API token (id from list-tokens)")
    _server_args(revoke_api)
    revoke_api.add_argument("token_id", type=int)
    revoke_api.set_defaults(handler=_cmd_revoke_api_token)
    revoke_user = admin.add_parser("revoke-user-token", help="refuse a personal token (id from list-tokens)")
    _server_args(revoke_user)
    revoke_user.add_argument("token_id")
    revoke_user.set_defaults(handler=_cmd_revoke_user_token)
    reset = admin.add_parser("reset-password", help="set a console user's password and end their sessions")
    _server_args(reset)
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    reset.set_defaults(handler=_cmd_reset_password)

    policy = sub.add_parser("policy", help="policy administration").add_subparsers(dest="policy", required=True)
    publish = policy.add_parser("publish", help="validate, sign and publish a policy file; prints the version")
    _server_args(publish)
    publish.add_argument("file", type=Path)
    publish.add_argument("--author", default="cli")
    publish.set_defaults(handler=_cmd_publish)

    enroll = sub.add_parser("enroll", help="enrol this machine's service with an endpoint (as root)")
    enroll.add_argument("url")
    enroll.add_argument("--token", required=True)
    enroll.add_argument("--ca", default=None, help="CA bundle that signs the endpoint's certificate")
    enroll.add_argument("--state-dir", type=Path, default=None, help="service state directory")
    enroll.set_defaults(handler=_cmd_enroll)

    service = sub.add_parser("service", help="run the privileged service in the foreground (root/SYSTEM)")
    service.add_argument("--state-dir", type=Path, default=None, help="state directory (default: machine-wide)")
    service.add_argument("--socket", type=Path, default=None, help="IPC socket path (default: /run/deskwarden/...)")
    service.add_argument(
        "--unprotected", action="store_true", help="demo/developer mode even as root: reported as not tamper-resistant"
    )
    service.set_defaults(handler=_cmd_service)

    agent = sub.add_parser("agent", help="run the session helper (tray when a display exists)")
    agent.add_argument("--socket", type=Path, default=None, help="the service's IPC socket")
    agent.add_argument("--headless", action="store_true")
    agent.add_argument(
        "--with-service",
        action="store_true",
        help="also run this user's own unprotected service (an install without admin rights; not tamper-resistant)",
    )
    agent.add_argument("--supervisor", action="store_true", help="also show supervisor alert notifications")
    agent.set_defaults(handler=_cmd_agent)

    status = sub.add_parser("status", help="print the agent's state (from the state dir as root, else the service)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--state-dir", type=Path, default=None, help="service state directory (root)")
    status.add_argument("--socket", type=Path, default=None, help="ask the running service over this socket")
    status.set_defaults(handler=_cmd_status)

    scan = sub.add_parser("scan", help="show what the PII detectors find in a file or standard input")
    scan.add_argument("file", nargs="?", default="-")
    scan.add_argument("--json", action="store_true")
    scan.set_defaults(handler=_cmd_scan)

    install = sub.add_parser(
        "install", help="as root/admin: the privileged service and a helper per session; otherwise a per-user agent"
    )
    install.add_argument("--server", default=None, help="endpoint URL to enrol with (needs --token)")
    install.add_argument("--token", default=None, help="enrolment token from `deskwarden admin enroll-token`")
    install.add_argument("--ca", default=None, help="CA bundle that signs the endpoint's certificate")
    install.add_argument("--all-users", action="store_true", help="register for every user (needs admin/root)")
    install.set_defaults(handler=_cmd_install)
    uninstall = sub.add_parser("uninstall", help="remove the agent (unlock token needed unless policy allows quitting)")
    uninstall.add_argument("--unlock-token", default=None, help="an uninstall token from the endpoint's admin")
    uninstall.add_argument("--state-dir", type=Path, default=None, help="service state directory")
    uninstall.add_argument("--all-users", action="store_true", help="remove the machine-wide registration")
    uninstall.set_defaults(handler=_cmd_uninstall)

    selftest = sub.add_parser("selftest", help="start every collector, record one event, stop; print a JSON report")
    selftest.set_defaults(handler=_cmd_selftest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from agent_app.core.logs import configure_logging

    args = build_parser().parse_args(argv)
    directory = None
    if args.command == "service":
        from agent_app.core.paths import log_dir, service_state_dir

        directory = log_dir(args.state_dir or service_state_dir())
    configure_logging(verbose=args.verbose, to_file=args.command in ("agent", "demo", "service"), directory=directory)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("central", "fastapi", "uvicorn", "sqlalchemy"):
            print(
                "deskwarden: this build has no central endpoint; install the `server` extra "
                "(pip install 'deskwarden[server]') or use the endpoint's own installation",
                file=sys.stderr,
            )
            return 2
        raise
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"deskwarden: {exc}", file=sys.stderr)
        return 2
