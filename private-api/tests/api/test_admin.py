from __future__ import annotations

import hashlib
import hmac
import shutil
import time
import uuid
from pathlib import Path

import httpx
from gateway_process import REPO_ROOT, SECRET_KEY, Gateway, start_gateway, stop_gateway
from sqlalchemy import create_engine, text


class TestCreateUser:
    def test_prints_a_working_api_key_as_its_last_line(self, gateway: Gateway) -> None:
        result = gateway.admin_executable("create-user", "--email", "carol@example.com", "--credits", "7")
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip().splitlines()[-1]
        assert key.startswith("fmu_test_")
        response = httpx.get(f"{gateway.base_url}/v1/billing/balance", headers={"Authorization": f"Bearer {key}"})
        assert response.json()["credits"] == 7

    def test_duplicate_email_fails_clearly(self, gateway: Gateway) -> None:
        assert gateway.admin_executable("create-user", "--email", "dave@example.com").returncode == 0
        again = gateway.admin_executable("create-user", "--email", "dave@example.com")
        assert again.returncode == 1
        assert "already exists" in again.stderr

    def test_keys_are_stored_only_as_keyed_hashes(self, gateway: Gateway) -> None:
        key = gateway.create_user()
        engine = create_engine(gateway.env["FMU_GATEWAY_DATABASE_URL"])
        try:
            with engine.connect() as connection:
                rows = [tuple(row) for row in connection.execute(text("SELECT * FROM api_keys"))]
        finally:
            engine.dispose()
        assert rows
        assert key[9:30] not in repr(rows)
        expected = hmac.new(SECRET_KEY.encode(), key.encode(), hashlib.sha256).hexdigest()
        assert any(expected in row for row in rows)


class TestEnsureDevUser:
    def test_is_idempotent_and_keeps_the_key(self, gateway: Gateway) -> None:
        key_file = gateway.var_dir / "dev-api-key"
        first = gateway.admin("ensure-dev-user", "--key-file", str(key_file))
        second = gateway.admin("ensure-dev-user", "--key-file", str(key_file))
        assert first.returncode == second.returncode == 0
        key = key_file.read_text().strip()
        assert first.stdout.strip().splitlines()[-1] == second.stdout.strip().splitlines()[-1] == key
        assert httpx.get(f"{gateway.base_url}/v1/fmus", headers={"Authorization": f"Bearer {key}"}).status_code == 200


class TestShutdown:
    def test_stopping_the_server_leaves_no_sandbox_behind(self, tmp_path: Path) -> None:
        var_dir = REPO_ROOT / "var" / f"test-stop-{uuid.uuid4().hex[:8]}"
        gateway = start_gateway(var_dir, FMU_GATEWAY_WARM_SANDBOXES="2")
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(list((var_dir / "sandboxes").glob("sbx-*"))) < 2:
                time.sleep(0.1)
            warm = {p.name for p in (var_dir / "sandboxes").glob("sbx-*")}
            assert len(warm) == 2
            # A warm sandbox's directory is made a moment before its process starts.
            while time.monotonic() < deadline and not set(sandbox_ids_running()) >= warm:
                time.sleep(0.1)
            assert set(sandbox_ids_running()) >= warm
        finally:
            stop_gateway(gateway)
            shutil.rmtree(var_dir, ignore_errors=True)
        time.sleep(0.5)
        assert not warm & set(sandbox_ids_running())


def sandbox_ids_running() -> list[str]:
    ids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "--sandbox-id" in argv[:-1]:
                ids.append(argv[argv.index("--sandbox-id") + 1])
    return ids


class TestGrantAndTier:
    def test_grant_and_take_back_go_through_the_ledger(self, gateway: Gateway) -> None:
        email = f"grant-{uuid.uuid4().hex[:8]}@example.com"
        key = gateway.admin("create-user", "--email", email, "--credits", "5").stdout.strip().splitlines()[-1]
        client = gateway.client(key)
        for _ in range(2):  # the same --key twice grants once
            result = gateway.admin("grant", "--email", email, "--credits", "10", "--reason", "goodwill",
                                   "--key", "goodwill-1")
            assert result.returncode == 0, result.stderr
        assert client.get("/v1/billing/balance").json()["credits"] == 15
        result = gateway.admin("grant", "--email", email, "--credits", "-20", "--reason", "chargeback")
        assert result.returncode == 0, result.stderr
        balance = client.get("/v1/billing/balance").json()
        assert (balance["credits"], balance["debt_credits"]) == (0, 5)
        entries = client.get("/v1/billing/ledger").json()["data"]
        assert sum(e["amount"] for e in entries) == 0
        assert {e["description"] for e in entries} >= {"goodwill", "chargeback"}

    def test_set_tier_changes_the_tier_and_refuses_an_unknown_one(self, gateway: Gateway) -> None:
        email = f"tier-{uuid.uuid4().hex[:8]}@example.com"
        key = gateway.admin("create-user", "--email", email).stdout.strip().splitlines()[-1]
        assert gateway.admin_executable("set-tier", "--email", email, "--tier", "team").returncode == 0
        assert gateway.client(key).get("/v1/billing/balance").json()["tier"] == "team"
        assert gateway.admin_executable("set-tier", "--email", email, "--tier", "platinum").returncode != 0
