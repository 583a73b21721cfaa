from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from databases import BACKENDS, temporary_database
from sqlalchemy import create_engine, inspect

from app.migrate import alembic_config, upgrade
from app.models import Base


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_the_models_schema_and_go_down_again(backend: str, tmp_path: Path) -> None:
    with temporary_database(backend, tmp_path) as url:
        upgrade(url)
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
            assert set(Base.metadata.tables) <= tables
            for name, table in Base.metadata.tables.items():
                columns = {c["name"] for c in inspect(engine).get_columns(name)}
                assert columns == {c.name for c in table.columns}, name
            command.downgrade(alembic_config(url), "base")
            assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
            upgrade(url)
        finally:
            engine.dispose()
