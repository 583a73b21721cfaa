"""deploy/: each descriptor is checked by the validator of the tool that reads it (botocore's ECS
model, the Compose specification and docker compose itself, the Vercel CLI), and cross-checked
against the app: every FMU_GATEWAY_* name it sets must be a Settings field."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml
from botocore.exceptions import ParamValidationError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.validate import validate_parameters
from pydantic import AliasChoices

from app.config import Settings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
ECS_FILE = DEPLOY / "aws_ecs_config.json"
VERCEL_FILE = DEPLOY / "vercel_config.json"

# The images' Dockerfiles, built by `make build`; a checkout without them yet skips, saying so.
IMAGE_DOCKERFILES = {"private-api/Dockerfile", "private-api/runner.Dockerfile", "open-sdk/Dockerfile"}
# The compose specification's JSON schema (draft 2019-09) as Debian's docker-compose package ships it.
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
REQUIRED_COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "p", "FMU_GATEWAY_SECRET_KEY": "k", "FMU_GATEWAY_JWT_SECRET": "j" * 32,
    "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "DOCKER_GID": "999",
}
ECS_PLACEHOLDERS = {"AWS_ACCOUNT_ID": "123456789012", "AWS_REGION": "eu-west-1",
                    "IMAGE_REGISTRY": "registry.invalid/fmu", "IMAGE_TAG": "v1", "DOCKER_GID": "994"}
# What the secrets' ARNs would hold, for loading Settings from a task's environment.
ECS_SECRET_VALUES = {"FMU_GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway@db.internal/fmu_gateway",
                     "FMU_GATEWAY_BROKER_URL": "redis://redis.internal:6379/0",
                     "FMU_GATEWAY_REDIS_URL": "redis://redis.internal:6379/1"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY($|_)")


def settings_env_names() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str) and choice.isupper())
        names.add(f"FMU_GATEWAY_{field_name.upper()}")
    return names


def gateway_names(names: Iterator[str] | list[str] | set[str]) -> set[str]:
    return {name for name in names if name.startswith("FMU_GATEWAY_")}


def unknown_settings(names: set[str]) -> set[str]:
    return gateway_names(names) - settings_env_names()


# --- docker-compose.yml ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def compose_config(file: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    # Only the variables given here: none from the caller's shell or a deploy/.env.
    clean = {name: value for name, value in os.environ.items()
             if name in ("PATH", "HOME", "DOCKER_HOST") or name.startswith("LC_")}
    return subprocess.run([*cli, "--env-file", str(env_file), "-f", str(file), "config", "-q"],
                          capture_output=True, text=True, env=clean, cwd=file.parent)


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so names are checkable"
    return {str(name): str(value) for name, value in env.items()}


class TestComposeFile:
    def test_it_matches_the_compose_specification(self, compose: dict[str, Any]) -> None:
        if not COMPOSE_SCHEMA.exists():
            pytest.skip(f"no compose schema at {COMPOSE_SCHEMA} (apt-get install docker-compose)")
        schema = json.loads(COMPOSE_SCHEMA.read_text())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft201909Validator(schema).iter_errors(compose)]
        assert errors == []

    def test_the_schema_catches_a_misspelt_key(self, compose: dict[str, Any]) -> None:
        if not COMPOSE_SCHEMA.exists():
            pytest.skip(f"no compose schema at {COMPOSE_SCHEMA} (apt-get install docker-compose)")
        schema = json.loads(COMPOSE_SCHEMA.read_text())
        broken = copy.deepcopy(compose)
        broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
        assert not jsonschema.Draft201909Validator(schema).is_valid(broken)

    def test_docker_compose_accepts_it(self, tmp_path: Path) -> None:
        result = compose_config(COMPOSE_FILE, REQUIRED_COMPOSE_ENV, tmp_path)
        assert result.returncode == 0, result.stderr

    def test_docker_compose_refuses_it_without_the_secrets(self, tmp_path: Path) -> None:
        env = dict(REQUIRED_COMPOSE_ENV)
        del env["POSTGRES_PASSWORD"]
        result = compose_config(COMPOSE_FILE, env, tmp_path)
        assert result.returncode != 0
        assert "POSTGRES_PASSWORD" in result.stderr

    def test_docker_compose_rejects_a_misspelt_key(self, tmp_path: Path) -> None:
        broken = tmp_path / "docker-compose.yml"
        broken.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:", "    helthcheck:", 1))
        result = compose_config(broken, REQUIRED_COMPOSE_ENV, tmp_path)
        assert result.returncode != 0
        assert "helthcheck" in result.stderr

    def test_builds_name_dockerfiles_of_the_repository(self, compose: dict[str, Any]) -> None:
        missing = []
        for name, service in compose["services"].items():
            if "build" not in service:
                continue
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            dockerfile = context / service["build"]["dockerfile"]
            assert context == REPO, f"{name}: images build from the repository root (wheelhouse)"
            assert "BASE_IMAGE" in service["build"].get("args", {}), f"{name}: no BASE_IMAGE for offline builds"
            relative = dockerfile.relative_to(REPO).as_posix()
            if not dockerfile.exists():
                assert relative in IMAGE_DOCKERFILES, f"{name}: {relative} does not exist"
                missing.append(relative)
        if missing:
            pytest.skip(f"image Dockerfiles not in this checkout yet: {sorted(set(missing))}")

    def test_every_gateway_variable_is_a_settings_field(self, compose: dict[str, Any]) -> None:
        names = {name for service in compose["services"].values() for name in service_environment(service)}
        assert unknown_settings(names) == set()

    def test_env_example_names_only_settings_fields(self) -> None:
        names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
        assert unknown_settings(names) == set()

    def test_every_interpolated_variable_is_in_env_example(self) -> None:
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
        documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
        assert used - documented == set()

    def test_secrets_come_from_the_environment(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            for variable, value in service_environment(service).items():
                if SECRET_NAME.search(variable):
                    assert re.fullmatch(r"\$\{\w+(:\?[^}]*|:-)\}", value), f"{name}: {variable} is hard-coded"

    def test_long_running_services_have_health_checks(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            if service.get("restart") == "no":
                continue
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert service["healthcheck"]["test"][0] == "CMD", f"{name}: exec form, no shell needed"

    def test_dependencies_wait_for_health_or_completion(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        for name, service in services.items():
            for target, dependency in service.get("depends_on", {}).items():
                assert target in services, f"{name} depends on unknown {target}"
                one_shot = services[target].get("restart") == "no"
                expected = "service_completed_successfully" if one_shot else "service_healthy"
                assert dependency["condition"] == expected, f"{name} -> {target}"
        for name in ("api", "worker"):
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services["migrate"]["command"] == ["migrate"]

    def test_worker_uses_the_docker_sandbox_with_the_var_dir_at_its_host_path(self, compose: dict[str, Any]) -> None:
        worker = compose["services"]["worker"]
        env = service_environment(worker)
        assert env["FMU_GATEWAY_SANDBOX"] == "docker"
        assert "/var/run/docker.sock:/var/run/docker.sock" in worker["volumes"]
        var_dir = env["FMU_GATEWAY_VAR_DIR"]
        assert f"{var_dir}:{var_dir}" in worker["volumes"]

    def test_healthchecks_run_with_python_not_curl(self, compose: dict[str, Any]) -> None:
        api_check = compose["services"]["api"]["healthcheck"]["test"]
        assert api_check[1] == "python3" and "/readyz" in api_check[-1]
        for name in ("api", "worker", "s3"):
            compile(compose["services"][name]["healthcheck"]["test"][-1], name, "exec")


def load_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a container with exactly this environment would read them."""
    for name in list(os.environ):
        if name.startswith("FMU_GATEWAY_") or name == "JWT_SECRET":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def interpolate(value: str) -> str:
    """Compose's ${NAME:?message} and ${NAME:-default}, with REQUIRED_COMPOSE_ENV as deploy/.env."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name in REQUIRED_COMPOSE_ENV:
            return REQUIRED_COMPOSE_ENV[name]
        return argument if operator == "-" else ""
    return re.sub(r"\$\{(\w+)(?::([?-])([^}]*))?\}", substitute, value)


@pytest.mark.parametrize("service", ["migrate", "api", "worker"])
def test_settings_accept_the_compose_environment(
        service: str, compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: interpolate(value) for name, value in service_environment(compose["services"][service]).items()}
    settings = load_settings(env, monkeypatch)
    assert settings.production and settings.sandbox == "docker"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


# --- aws_ecs_config.json -----------------------------------------------------------------------


def load_render_ecs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_ecs", DEPLOY / "render_ecs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_ecs", module)
    spec.loader.exec_module(module)
    return module


render_ecs = load_render_ecs()
TASK_DEFINITIONS = {d["family"]: d for d in render_ecs.render(ECS_PLACEHOLDERS)}


@pytest.fixture(scope="module")
def register_input() -> StructureShape:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    assert isinstance(shape, StructureShape)
    return shape


def enum_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """botocore's validator checks types and names, not enum values: this walks the same model."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return [error for key, item in value.items() if key in shape.members
                for error in enum_errors(item, shape.members[key], f"{path}.{key}")]
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [error for i, item in enumerate(value) for error in enum_errors(item, shape.member, f"{path}[{i}]")]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return [error for item in value.values() for error in enum_errors(item, shape.value, path)]
    enum = getattr(shape, "enum", None)
    if enum and value not in enum:
        return [f"{path}: {value!r} not in {enum}"]
    return []


def containers(family: str) -> list[dict[str, Any]]:
    definitions: list[dict[str, Any]] = TASK_DEFINITIONS[family]["containerDefinitions"]
    return definitions


class TestEcsTaskDefinitions:
    def test_there_is_one_for_the_api_and_one_for_the_worker(self) -> None:
        assert set(TASK_DEFINITIONS) == {"fmu-gateway-api", "fmu-gateway-worker"}

    @pytest.mark.parametrize("family", sorted(TASK_DEFINITIONS))
    def test_botocore_accepts_it_as_a_register_task_definition_request(
            self, family: str, register_input: StructureShape) -> None:
        validate_parameters(TASK_DEFINITIONS[family], register_input)
        assert enum_errors(TASK_DEFINITIONS[family], register_input) == []

    def test_botocore_rejects_a_broken_definition(self, register_input: StructureShape) -> None:
        broken = copy.deepcopy(TASK_DEFINITIONS["fmu-gateway-worker"])
        container = broken["containerDefinitions"][0]
        container["helthCheck"] = container.pop("healthCheck")
        container["stopTimeout"] = "60"
        del broken["family"]
        with pytest.raises(ParamValidationError) as raised:
            validate_parameters(broken, register_input)
        report = str(raised.value)
        assert "helthCheck" in report and "stopTimeout" in report and "family" in report

    def test_the_enum_walk_rejects_an_unknown_network_mode(self, register_input: StructureShape) -> None:
        broken = copy.deepcopy(TASK_DEFINITIONS["fmu-gateway-api"])
        broken["networkMode"] = "overlay"
        validate_parameters(broken, register_input)  # what botocore alone lets through
        (error,) = enum_errors(broken, register_input)
        assert error.startswith(".networkMode: 'overlay' not in")

    def test_rendering_needs_every_placeholder(self) -> None:
        assert render_ecs.placeholders(json.loads(ECS_FILE.read_text())) == set(ECS_PLACEHOLDERS)
        with pytest.raises(KeyError, match="IMAGE_TAG"):
            render_ecs.render({k: v for k, v in ECS_PLACEHOLDERS.items() if k != "IMAGE_TAG"})

    def test_the_worker_runs_on_ec2_with_the_docker_socket_and_var_dir_at_the_host_path(self) -> None:
        worker = TASK_DEFINITIONS["fmu-gateway-worker"]
        assert worker["requiresCompatibilities"] == ["EC2"]
        host_paths = {volume["name"]: volume["host"]["sourcePath"] for volume in worker["volumes"]}
        (container,) = containers("fmu-gateway-worker")
        mounts = {m["sourceVolume"]: m["containerPath"] for m in container["mountPoints"]}
        assert all(mounts[name] == path for name, path in host_paths.items())
        assert "/var/run/docker.sock" in mounts.values()
        env = {item["name"]: item["value"] for item in container["environment"]}
        assert env["FMU_GATEWAY_SANDBOX"] == "docker"
        assert env["FMU_GATEWAY_VAR_DIR"] in host_paths.values()
        assert container["command"] == ["worker"]
        assert container["user"].endswith(f":{ECS_PLACEHOLDERS['DOCKER_GID']}"), "in the socket's group"

    def test_the_api_fits_fargate(self) -> None:
        api = TASK_DEFINITIONS["fmu-gateway-api"]
        assert "FARGATE" in api["requiresCompatibilities"]
        assert api["networkMode"] == "awsvpc" and api["cpu"] and api["memory"]
        assert "volumes" not in api
        (container,) = containers("fmu-gateway-api")
        assert "/healthz" in container["healthCheck"]["command"][-1]
        assert container["command"] == ["serve"]

    @pytest.mark.parametrize("family", sorted(TASK_DEFINITIONS))
    def test_containers_have_health_checks_logs_and_secrets_by_reference(self, family: str) -> None:
        for container in containers(family):
            assert container["healthCheck"]["command"][0] == "CMD"
            compile(container["healthCheck"]["command"][-1], family, "exec")
            assert container["logConfiguration"]["logDriver"] == "awslogs"
            assert container["logConfiguration"]["options"]["awslogs-region"] == ECS_PLACEHOLDERS["AWS_REGION"]
            for secret in container["secrets"]:
                assert re.match(r"arn:aws:(secretsmanager|ssm):", secret["valueFrom"]), secret
            plain = [item["name"] for item in container["environment"]]
            assert [name for name in plain if SECRET_NAME.search(name)] == []

    @pytest.mark.parametrize("family", sorted(TASK_DEFINITIONS))
    def test_every_gateway_variable_is_a_settings_field(self, family: str) -> None:
        names = {item["name"] for container in containers(family)
                 for item in container["environment"] + container["secrets"]}
        assert unknown_settings(names) == set()

    @pytest.mark.parametrize("family", sorted(TASK_DEFINITIONS))
    def test_settings_accept_the_task_environment(self, family: str, monkeypatch: pytest.MonkeyPatch) -> None:
        (container,) = containers(family)
        env = {item["name"]: item["value"] for item in container["environment"]}
        env.update({item["name"]: ECS_SECRET_VALUES.get(item["name"], "s" * 32) for item in container["secrets"]})
        settings = load_settings(env, monkeypatch)
        assert settings.production and settings.sandbox == "docker"


# --- vercel_config.json ------------------------------------------------------------------------


def vercel_cli_dir() -> Path:
    configured = os.environ.get("VERCEL_CLI_DIR")
    directory = Path(configured) if configured else DEPLOY / "node_modules" / "vercel"
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Vercel CLI's validator runs on it")
    if not (directory / "dist" / "chunks" / "config-validator.mjs").exists():
        pytest.skip(f"no Vercel CLI at {directory} ('npm ci --prefix deploy', or set VERCEL_CLI_DIR)")
    return directory


def check_vercel_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERCEL_CLI_DIR": str(vercel_cli_dir())}
    return subprocess.run(["node", str(DEPLOY / "check_vercel_config.mjs"), str(path)],
                          capture_output=True, text=True, env=env)


class TestVercelConfig:
    def test_the_vercel_cli_validator_accepts_it(self) -> None:
        result = check_vercel_config(VERCEL_FILE)
        assert result.returncode == 0, result.stderr

    def test_the_vercel_cli_validator_rejects_a_broken_header_rule(self, tmp_path: Path) -> None:
        config = json.loads(VERCEL_FILE.read_text())
        config["headers"][0]["sorce"] = config["headers"][0].pop("source")
        broken = tmp_path / "vercel.json"
        broken.write_text(json.dumps(config))
        result = check_vercel_config(broken)
        assert result.returncode == 1
        assert "headers[0]" in result.stderr

    def test_its_build_writes_the_docs_site_to_the_output_directory(self, tmp_path: Path) -> None:
        pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install mkdocs to build the docs site")
        config = json.loads(VERCEL_FILE.read_text())
        mkdocs_config = yaml.safe_load((DEPLOY / "mkdocs.yml").read_text())
        assert (DEPLOY / mkdocs_config["site_dir"]).resolve() == REPO / config["outputDirectory"]
        assert "--config-file deploy/mkdocs.yml" in config["buildCommand"]
        site = tmp_path / "site"
        result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--config-file", "deploy/mkdocs.yml",
                                 "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for page in ("index.html", "deployment/index.html", "sdk_usage/index.html"):
            assert (site / page).exists(), page


# --- make deploy -------------------------------------------------------------------------------


class TestMakeDeploy:
    def test_without_a_target_it_only_prints_the_steps(self) -> None:
        result = subprocess.run(["make", "-s", "deploy"], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for step in ("make build", "docker compose -f deploy/docker-compose.yml up -d",
                     "aws ecs register-task-definition", "--local-config deploy/vercel_config.json"):
            assert step in result.stdout

    def test_an_unknown_target_fails(self) -> None:
        result = subprocess.run(["make", "-s", "deploy", "TARGET=kubernetes"], cwd=REPO, capture_output=True, text=True)
        assert result.returncode != 0
        assert "unknown TARGET=kubernetes" in result.stdout


class TestGrafanaDashboard:
    def test_every_series_it_plots_is_one_the_gateway_exports(self) -> None:
        from app import metrics

        dashboard = json.loads((DEPLOY / "grafana" / "fmu_gateway_dashboard.json").read_text())
        exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
        plotted = {name for expr in exprs for name in re.findall(r"fmu_gateway_\w+", expr)}
        exported = {sample for collector in (metrics.RUNS, metrics.RUN_DURATION, metrics.QUEUE_WAIT,
                                             metrics.SANDBOX_START, metrics.CREDITS_SETTLED, metrics.HTTP_REQUESTS)
                    for family in collector.describe() for sample in (family.name + "_total", family.name + "_bucket",
                                                                       family.name)}
        exported |= {metrics.QUEUE_DEPTH, metrics.STORAGE_FREE}
        assert plotted and plotted <= exported, plotted - exported
        assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
