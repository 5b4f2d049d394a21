"""Alembic environment: every domain's tables, one connection, no logging set-up of its own."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from acd.history import metadata as acd_metadata
from cti.history import metadata as cti_metadata

config = context.config
target_metadata = [cti_metadata, acd_metadata]


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url: set by migrations.alembic_config()"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # render_as_batch lets later ALTERs work on SQLite too.
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
