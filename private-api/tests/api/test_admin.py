from __future__ import annotations

import httpx
from conftest import Gateway


class TestCreateUser:
    def test_prints_a_working_api_key_as_its_last_line(self, gateway: Gateway) -> None:
        result = gateway.admin("create-user", "--email", "carol@example.com", "--credits", "7")
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip().splitlines()[-1]
        assert key.startswith("fmu_test_")
        response = httpx.get(f"{gateway.base_url}/v1/billing/balance", headers={"Authorization": f"Bearer {key}"})
        assert response.json() == {"credits": 7}

    def test_duplicate_email_fails_clearly(self, gateway: Gateway) -> None:
        assert gateway.admin("create-user", "--email", "dave@example.com").returncode == 0
        again = gateway.admin("create-user", "--email", "dave@example.com")
        assert again.returncode == 1
        assert "already exists" in again.stderr

    def test_keys_are_stored_only_as_keyed_hashes(self, gateway: Gateway) -> None:
        key = gateway.create_user()
        database = b"".join(p.read_bytes() for p in gateway.var_dir.glob("fmu_gateway.db*"))
        assert key.encode() not in database
        assert key[9:30].encode() not in database


class TestEnsureDevUser:
    def test_is_idempotent_and_keeps_the_key(self, gateway: Gateway) -> None:
        key_file = gateway.var_dir / "dev-api-key"
        first = gateway.admin("ensure-dev-user", "--key-file", str(key_file))
        second = gateway.admin("ensure-dev-user", "--key-file", str(key_file))
        assert first.returncode == second.returncode == 0
        key = key_file.read_text().strip()
        assert first.stdout.strip().splitlines()[-1] == second.stdout.strip().splitlines()[-1] == key
        assert httpx.get(f"{gateway.base_url}/v1/fmus", headers={"Authorization": f"Bearer {key}"}).status_code == 200
