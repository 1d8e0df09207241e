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
    dialect = engine.dialect.name

    def here(item: object, _name: object, kind: str, _reflected: bool, _other: object) -> bool:
        """Leave out an index declared for the other database only (``Index.ddl_if``)."""
        only = getattr(item, "_ddl_if", None)
        return kind != "index" or only is None or only.dialect in (None, dialect)

    with engine.connect() as conn:
        options = {"compare_type": True, "include_object": here}
        context = MigrationContext.configure(conn, opts=options)
        assert compare_metadata(context, declared) == []
        if dialect == "postgresql":  # room on each page for HOT leases (revision 0014)
            storage = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'webhook_deliveries'"
            ).scalar_one()
            assert storage == ["fillfactor=70"]
    assert set(sa.inspect(engine).get_table_names()) == set(declared.tables) | {"alembic_version"}
