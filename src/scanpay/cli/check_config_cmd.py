"""``scanpay check-config``: validate a configuration and make one signed call to WeChat Pay.

It reads the settings as ``scanpay serve`` does (environment and/or ``--env-file``), reports
every invalid setting by name and reason, loads the key material, checks that the database
answers and is at the latest schema, and makes one signed call with the configured API:
v2 ``orderquery`` for an order that does not exist (``ORDERNOTEXIST`` proves the key and the
signature are right: WeChat answers a bad signature with ``签名错误``); v3 in certificate mode a
``/v3/certificates`` download (decrypting it proves the API v3 key), in public-key mode a query
for an order that does not exist (a verified ``ORDER_NOT_EXIST``). It prints one line per check
(``ok`` or ``problem``), never a secret; the exit status is 0 when everything is right.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from scanpay.cli.serve_cmd import load_settings
from scanpay.config import Settings
from scanpay.errors import ApiError, ScanpayError
from scanpay.store.migrate import MIGRATIONS, make_engine
from scanpay.web.wiring import WeChatClients, build_wechat

PROBE_OUT_TRADE_NO = "scanpaycheckconfig0000000001"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=Path, default=None, help="a dotenv file of SCANPAY_*")
    parser.add_argument("--no-call", action="store_true", help="skip the signed call to WeChat Pay")


class Report:
    def __init__(self) -> None:
        self.problems = 0

    def ok(self, what: str) -> None:
        print(f"ok       {what}")

    def problem(self, what: str) -> None:
        self.problems += 1
        print(f"problem  {what}")


def check_database(settings: Settings, report: Report) -> None:
    try:
        engine = make_engine(settings.database_url)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:  # a bad URL or driver
        report.problem(f"database: cannot use SCANPAY_DATABASE_URL ({type(exc).__name__})")
        return
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        report.problem(f"database: cannot connect ({type(exc).__name__})")
        return
    finally:
        engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    if current == head:
        report.ok(f"database: reachable ({engine.dialect.name}), schema at {head}")
    elif settings.migrate_on_startup:
        report.ok(f"database: reachable, schema at {current}; serve upgrades it to {head}")
    else:
        report.problem(
            f"database: schema at {current}, not {head}, and SCANPAY_MIGRATE_ON_STARTUP is false"
        )


async def signed_call(settings: Settings, wechat: WeChatClients, report: Report) -> None:
    where = settings.wechat_base_url
    try:
        if settings.api_version == "v2":
            assert wechat.v2 is not None
            try:
                await wechat.v2.query_order(out_trade_no=PROBE_OUT_TRADE_NO)
            except ApiError as exc:
                if exc.code != "ORDERNOTEXIST":
                    raise
            report.ok(f"WeChat Pay v2 at {where}: a signed orderquery was accepted and verified")
            return
        assert wechat.v3 is not None
        if wechat.v3.download_certificates:
            serials = await wechat.v3.refresh_certificates()
            report.ok(
                f"WeChat Pay v3 at {where}: platform certificates downloaded and decrypted "
                f"with the API v3 key ({len(serials)} certificate(s))"
            )
            return
        try:
            await wechat.v3.query_by_out_trade_no(PROBE_OUT_TRADE_NO)
        except ApiError as exc:
            if exc.code != "ORDER_NOT_EXIST":
                raise
        report.ok(f"WeChat Pay v3 at {where}: a signed query was accepted, its answer verified")
    except ScanpayError as exc:
        report.problem(
            f"WeChat Pay {settings.api_version} at {where}: {exc.code}: {exc.message or exc}"[:300]
        )


def run(args: argparse.Namespace) -> int:
    report = Report()
    try:
        settings = load_settings(args.env_file)
    except ScanpayError as exc:
        report.problem(exc.message)
        return 1
    mode: str = settings.api_version
    if mode == "v3":
        mode += " public-key mode" if settings.wechatpay_public_key_id else " certificate mode"
    report.ok(f"settings: valid (API {mode})")
    try:
        wechat = build_wechat(settings)
    except ScanpayError as exc:
        report.problem(f"key material: {exc.message}")
        return 1
    report.ok("key material: loaded")
    check_database(settings, report)
    if not args.no_call:

        async def call() -> None:
            try:
                await signed_call(settings, wechat, report)
            finally:
                await wechat.aclose()

        asyncio.run(call())
    return 1 if report.problems else 0
