from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from databases import BACKENDS, temporary_database
from sqlalchemy import create_engine, inspect, text

from app.kit.models import Base
from app.migrate import alembic_config, upgrade


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_0005_copies_each_fmus_summary_out_of_its_model_info(backend: str, tmp_path: Path) -> None:
    info = {"variables": [{"name": "x"}, {"name": "y"}], "platforms": ["linux64"],
            "default_experiment": {"stop_time": 2.0}}
    with temporary_database(backend, tmp_path) as url:
        upgrade(url, "0004")
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO users (id, email, credits, created_at) "
                                        "VALUES ('usr_1', 'a@example.com', 0, CURRENT_TIMESTAMP)"))
                connection.execute(text(
                    "INSERT INTO fmus (id, user_id, sha256, size, fmi_version, model_name, guid, "
                    "supports_model_exchange, supports_co_simulation, model_info, created_at) VALUES "
                    "('fmu_1', 'usr_1', :sha, 10, '2.0', 'm', 'g', false, true, :info, CURRENT_TIMESTAMP)"),
                    {"sha": "0" * 64, "info": json.dumps(info)})
            upgrade(url)
            with engine.connect() as connection:
                row = connection.execute(text("SELECT variable_count, default_experiment, platforms, "
                                              "extracted_bytes FROM fmus")).one()
        finally:
            engine.dispose()
    count, experiment, platforms, extracted = row
    assert (count, as_json(experiment), as_json(platforms), extracted) == (2, {"stop_time": 2.0}, ["linux64"], None)


def as_json(value: object) -> object:
    # Raw SQL: SQLite returns JSON as text, PostgreSQL's driver parses it.
    return json.loads(value) if isinstance(value, str) else value


def test_migrate_on_a_fresh_machine_makes_the_directories_it_needs(tmp_path: Path) -> None:
    var_dir = tmp_path / "not" / "there" / "yet"
    env = {**os.environ, "FMU_GATEWAY_VAR_DIR": str(var_dir), "FMU_GATEWAY_ENVIRONMENT": "test"}
    env.pop("FMU_GATEWAY_DATABASE_URL", None)
    done = subprocess.run([str(Path(sys.executable).parent / "fmu-gateway-admin"), "migrate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    database = next(var_dir.rglob("*.db"))
    tables = inspect(create_engine(f"sqlite:///{database}")).get_table_names()
    assert {"runs", "fmus", "users", "ledger_entries"} <= set(tables)
