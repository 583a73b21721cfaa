"""The layout docs/architecture.md promises, held by the code itself: a package per domain with its
routes, service, repository, schemas and models; SQL built only in repositories; transactions
committed only by their owners (a request or a worker task); and no import cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import app

APP = Path(app.__file__).resolve().parent
DOMAINS = ("fmus", "sharing", "runs", "sweeps", "billing", "auth")
PARTS = ("routes.py", "service.py", "repository.py", "schemas.py", "models.py")
# Where SQL may be built or sent besides the domains' repositories: a table's own store, the
# pager that runs a repository's query, the readiness probe, the database and the admin CLI.
SQL_ELSEWHERE = {"idempotency/store.py", "kit/pagination.py", "health.py", "db.py", "admin.py"}
SQL_CALLS = {"select", "update", "insert", "delete"}
SESSION_QUERIES = {"execute", "scalar", "scalars", "get"}
# Who may end a transaction: requests (routes, their dependencies and middleware) and worker tasks.
TRANSACTION_OWNERS = {"admin.py", "db.py", "runs/executor.py", "runs/retention.py", "billing/usage_reporter.py",
                      "dispatch/base.py",
                      "dispatch/leases.py", "dispatch/relay.py", "auth/dependencies.py",
                      "idempotency/middleware.py"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP).as_posix()
        if not relative.startswith(("migrations/", "sandbox/")):  # the sandbox runs no SQL
            yield relative, ast.parse(path.read_text(), relative)


def sqlalchemy_names(tree: ast.Module) -> set[str]:
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
            for alias in node.names}


def sql_sites(relative: str, tree: ast.Module) -> list[str]:
    """Calls that build a statement (``select(...)`` from SQLAlchemy) or send one (``session.execute``)."""
    names = sqlalchemy_names(tree) & SQL_CALLS
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        builds = isinstance(function, ast.Name) and function.id in names
        sends = (isinstance(function, ast.Attribute) and function.attr in SESSION_QUERIES
                 and isinstance(function.value, ast.Name) and function.value.id in ("session", "connection"))
        if builds or sends:
            found.append(f"{relative}:{node.lineno}")
    return found


def transaction_ends(relative: str, tree: ast.Module) -> list[str]:
    return [f"{relative}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("commit", "rollback")]


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_has_its_routes_service_repository_schemas_and_models(domain: str) -> None:
    assert sorted(part for part in PARTS if (APP / domain / part).is_file()) == sorted(PARTS)


def test_sql_is_built_and_sent_only_in_repositories() -> None:
    seen = {relative: sql_sites(relative, tree) for relative, tree in modules()}
    assert seen["runs/repository.py"] and seen["kit/pagination.py"], "the check must see SQL where it is"
    outside = [site for relative, sites in seen.items() if sites
               and not relative.endswith("/repository.py") and relative not in SQL_ELSEWHERE for site in sites]
    assert outside == []


def test_only_requests_and_worker_tasks_end_a_transaction() -> None:
    seen = {relative: transaction_ends(relative, tree) for relative, tree in modules()}
    assert seen["runs/routes.py"] and seen["runs/executor.py"], "the check must see the owners' commits"
    others = [site for relative, sites in seen.items()
              if not relative.endswith("/routes.py") and relative not in TRANSACTION_OWNERS for site in sites]
    assert others == []


def imports(relative: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The app modules ``relative`` imports, at any depth but under ``if TYPE_CHECKING``."""
    typing_only = {id(node) for branch in tree.body if isinstance(branch, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(branch.test) for node in ast.walk(branch)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("app"):
            assert node.module is not None
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in candidates if name in known}
    return found


def test_no_module_imports_itself_through_others() -> None:
    trees = {}
    for path in APP.rglob("*.py"):
        relative = path.relative_to(APP)
        if "migrations" not in relative.parts:
            name = ".".join(("app", *relative.with_suffix("").parts)).removesuffix(".__init__")
            trees[name] = ast.parse(path.read_text())
    graph = {name: imports(name, tree, set(trees)) - {name} for name, tree in trees.items()}
    assert graph["app.runs.lifecycle"], "the check must see imports"

    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
