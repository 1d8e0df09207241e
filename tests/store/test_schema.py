"""The migration chain's newest revision makes exactly the schema the store's modules declare
(tables, columns, types, nullability, indexes), on SQLite and PostgreSQL.

Migrations keep their own copies of the column lists on purpose: a revision is a frozen
snapshot of the schema at that version, so it must not import the live table definitions
(they change later). This test is what keeps the copies and the declarations from drifting
apart."""

from __future__ import annotations

import importlib
import pkgutil

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import scanpay.store
from scanpay.store.tables import metadata


def declared_metadata() -> sa.MetaData:
    """``metadata`` once every store module has declared its tables on it."""
    for module in pkgutil.iter_modules(scanpay.store.__path__):
        if module.name != "migrations":
            importlib.import_module(f"scanpay.store.{module.name}")
    return metadata


def test_the_newest_revision_makes_exactly_the_declared_schema(engine: sa.Engine) -> None:
    declared = declared_metadata()
    assert {"orders", "reconciliation_differences", "payment_queries"} <= set(declared.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, declared) == []
    assert set(sa.inspect(engine).get_table_names()) == set(declared.tables) | {"alembic_version"}
