"""``scanpay operator add|list|disable|enable|reset-password``: console accounts.

Uses the same ``SCANPAY_*`` configuration (and ``--env-file``) as ``scanpay serve``, so it
changes the database the service uses (upgraded to the latest schema first when
``migrate_on_startup`` is on). Passwords are typed at a prompt (twice) or read from standard
input with ``--password-stdin`` (the first line); they are stored as Argon2id hashes and never
printed. Each change is written to the console's audit log as done by ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from scanpay.cli.serve_cmd import load_settings
from scanpay.domain.model import utcnow
from scanpay.domain.operators import Action, Role, check_name
from scanpay.errors import ValidationError
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.operators import OperatorStore
from scanpay.web.cluster import engine_options
from scanpay.web.console.passwords import hash_password


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--env-file", type=Path, default=None, help="a dotenv file with SCANPAY_* settings"
    )
    subs = parser.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    add = subs.add_parser("add", help="add an operator")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    subs.add_parser("list", help="list operators (name, role, state)")
    for name, text in (
        ("disable", "disable an operator (their sessions end)"),
        ("enable", "enable a disabled operator"),
    ):
        sub = subs.add_parser(name, help=text)
        sub.add_argument("name")
    reset = subs.add_parser("reset-password", help="set a new password (their sessions end)")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValidationError("the two passwords differ", code="PASSWORDS_DIFFER")
    return first


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.env_file)
    engine = make_engine(settings.database_url, **engine_options(settings))
    try:
        if settings.migrate_on_startup:
            upgrade(engine)
        return _act(OperatorStore(engine), args)
    finally:
        engine.dispose()


def _audit(store: OperatorStore, name: str, what: dict[str, str]) -> None:
    user = getpass.getuser()
    store.record_action(
        None, f"cli:{user}", Action.MANAGE_OPERATORS, f"operator:{name}", "ok", what, "local",
        utcnow(),
    )  # fmt: skip


def _act(store: OperatorStore, args: argparse.Namespace) -> int:
    command: str = args.operator_command
    if command == "list":
        for operator in store.list_operators():
            state = "disabled" if operator.disabled else "active"
            print(f"{operator.name}\t{operator.role.value}\t{state}")
        return 0
    name = check_name(args.name)
    if command == "add":
        password_hash = hash_password(read_password(args.password_stdin))
        operator = store.add(name, Role(args.role), password_hash, utcnow())
        _audit(store, name, {"added": operator.role.value})
        print(f"added {operator.name} ({operator.role.value})")
    elif command in ("disable", "enable"):
        store.set_disabled(name, command == "disable", utcnow())
        _audit(store, name, {"change": command})
        print(f"{command}d {name}")
    else:
        store.set_password(name, hash_password(read_password(args.password_stdin)), utcnow())
        _audit(store, name, {"change": "reset-password"})
        print(f"new password set for {name}")
    return 0
