"""``scanpay`` entry point: one sub-command per module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

from scanpay.errors import ScanpayError

# sub-command -> module under scanpay.cli that defines ``configure(parser)`` and ``run(args)``
COMMANDS: Final = {
    "demo": ("demo_cmd", "run the whole flow on this machine with no configuration"),
    "serve": ("serve_cmd", "run the merchant service from configuration"),
    "simulator": ("simulator_cmd", "run the local WeChat Pay simulator"),
    "pay": ("pay_cmd", "act as the shopper's phone against a simulator"),
    # issue 9
    "check-config": ("check_config_cmd", "validate a configuration and make one signed call"),
    "operator": ("operator_cmd", "manage operator console accounts"),
    "db": ("db_cmd", "upgrade the database schema or show its revision"),
    "reconcile": ("reconcile_cmd", "reconcile one day against WeChat Pay's bill (对账)"),
    # issue 15
    "doctor": ("doctor_cmd", "check a shop's notification handler against the simulator"),
    # webhooks (issue 11)
    "listen": ("listen_cmd", "forward a service's events to a local URL, signed (development)"),
    "trigger": ("trigger_cmd", "make an event happen (order.paid) on a service with the simulator"),
    # webhooks (issue 11): delivery in processes of its own
    "deliver": ("deliver_cmd", "deliver webhooks only (beside `serve` with the worker off)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scanpay", description=__doc__)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"scanpay.cli.{module_name}")
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args._run(args)
    except ScanpayError as exc:
        print(f"scanpay: {exc.code}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
