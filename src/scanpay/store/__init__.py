"""Persistence of the domain: SQLAlchemy 2 Core tables, a compare-and-set store, migrations."""
