"""Alembic migrations: the only source of the database schema.

``upgrade(url)`` brings any supported database to the newest schema; ``callcenter migrate``
and the start-up of the app call it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` that needs no alembic.ini on disk."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # ConfigParser interpolation would eat a "%" in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Revert to ``revision`` (``base`` for an empty database)."""
    command.downgrade(alembic_config(url), revision)
