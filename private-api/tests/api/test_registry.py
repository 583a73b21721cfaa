from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from gateway_process import Gateway
from problems import assert_problem


def upload_bytes(client: httpx.Client, data: bytes, name: str = "model.fmu") -> httpx.Response:
    return client.post("/v1/fmus", files={"file": (name, data)})


def stored_files(gateway: Gateway) -> set[str]:
    """Every file the gateway keeps for FMUs: blobs, extracted cache, upload temp files."""
    roots = [gateway.var_dir / "storage" / "fmus", gateway.var_dir / "cache" / "fmus", gateway.var_dir / "tmp"]
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")}


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def fmi2_xml(model_identifier: str = "m", extra: str = "") -> bytes:
    return f"""<?xml version="1.0"?>{extra}
<fmiModelDescription fmiVersion="2.0" modelName="m" guid="{{0}}" generationTool="handmade">
  <CoSimulation modelIdentifier="{model_identifier}"/>
  <ModelVariables><ScalarVariable name="x" valueReference="0" causality="output"><Real/></ScalarVariable>
  </ModelVariables>
  <ModelStructure><Outputs><Unknown index="1"/></Outputs></ModelStructure>
</fmiModelDescription>""".encode()


class TestUpload:
    def test_upload_stores_the_fmu_and_its_metadata(self, alice: httpx.Client, fmus: dict[str, Path]) -> None:
        data = fmus["VanDerPol"].read_bytes()
        response = upload_bytes(alice, data, "VanDerPol.fmu")
        assert response.status_code in (200, 201)
        body = response.json()
        assert body["id"].startswith("fmu_")
        assert body["fmi_version"] == "2.0"
        assert body["model_name"] == "VanDerPol"
        assert body["supports_model_exchange"] and body["supports_co_simulation"]
        assert "linux64" in body["platforms"]
        assert body["size"] == len(data)
        names = {v["name"]: v for v in body["variables"]}
        assert names["mu"]["causality"] == "parameter"
        assert names["mu"]["start"] == 1.0
        assert names["x0"]["causality"] == "output"
        assert body["default_experiment"]["stop_time"] == 20
        assert response.headers["location"] == f"/v1/fmus/{body['id']}"

    def test_same_bytes_again_return_the_same_fmu(self, alice: httpx.Client, fmus: dict[str, Path]) -> None:
        data = fmus["Feedthrough"].read_bytes()
        first = upload_bytes(alice, data)
        second = upload_bytes(alice, data)
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]

    def test_same_bytes_from_another_user_are_their_own_fmu(
        self, alice: httpx.Client, bob: httpx.Client, fmus: dict[str, Path]
    ) -> None:
        data = fmus["Feedthrough"].read_bytes()
        assert upload_bytes(alice, data).json()["id"] != upload_bytes(bob, data).json()["id"]

    def test_raw_octet_stream_upload_is_accepted(self, alice: httpx.Client, fmus: dict[str, Path]) -> None:
        response = alice.post("/v1/fmus?filename=vdp.fmu", content=fmus["VanDerPol"].read_bytes(),
                              headers={"content-type": "application/octet-stream"})
        assert response.status_code in (200, 201)
        assert response.json()["model_name"] == "VanDerPol"

    def test_fmi3_fmu_is_accepted(self, alice: httpx.Client, fmus: dict[str, Path]) -> None:
        body = upload_bytes(alice, fmus["BouncingBall3"].read_bytes()).json()
        assert body["fmi_version"] == "3.0"
        assert "x86_64-linux" in body["platforms"]

    def test_upload_without_api_key_is_401(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        assert_problem(upload_bytes(gateway.client(None), fmus["VanDerPol"].read_bytes()), 401, "unauthenticated")

    def test_upload_with_unknown_api_key_is_401(self, gateway: Gateway) -> None:
        client = gateway.client("fmu_test_" + "A" * 49)
        assert_problem(client.get("/v1/fmus"), 401, "unauthenticated")


HOSTILE_UPLOADS: dict[str, tuple[int, str]] = {
    "not_a_zip": (422, "not_a_zip"),
    "zip_slip": (422, "unsafe_archive"),
    "absolute_path": (422, "unsafe_archive"),
    "symlink": (422, "unsafe_archive"),
    "zip_bomb": (413, "archive_too_large"),
    "entity_bomb": (422, "invalid_model_description"),
    "external_entity": (422, "invalid_model_description"),
    "no_model_description": (422, "missing_model_description"),
    "windows_only": (422, "unsupported_platform"),
    "fmi1": (422, "unsupported_fmi_version"),
    "oversize": (413, "payload_too_large"),
}


def hostile_upload(kind: str) -> bytes:
    binary = {"binaries/linux64/m.so": b"\x7fELF"}
    if kind == "not_a_zip":
        return b"this is not a zip archive" * 100
    if kind == "zip_slip":
        return zip_of({"modelDescription.xml": fmi2_xml(), **binary, "../../evil.txt": b"x"})
    if kind == "absolute_path":
        return zip_of({"modelDescription.xml": fmi2_xml(), **binary, "/tmp/evil.txt": b"x"})
    if kind == "symlink":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("modelDescription.xml", fmi2_xml())
            archive.writestr("binaries/linux64/m.so", b"\x7fELF")
            link = zipfile.ZipInfo("resources/link")
            link.external_attr = (0o120777 << 16)
            archive.writestr(link, "/etc/passwd")
        return buffer.getvalue()
    if kind == "zip_bomb":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("modelDescription.xml", fmi2_xml())
            archive.writestr("binaries/linux64/m.so", b"\x7fELF")
            with archive.open("resources/zeros.bin", "w", force_zip64=True) as member:
                chunk = bytes(1 << 20)
                for _ in range(1200):  # 1.2 GiB of zeros, ~1.2 MB compressed
                    member.write(chunk)
        return buffer.getvalue()
    if kind == "entity_bomb":
        bomb = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        return zip_of({"modelDescription.xml": fmi2_xml(extra=bomb).replace(b'modelName="m"', b'modelName="&lol2;"'),
                       **binary})
    if kind == "external_entity":
        xxe = '<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        return zip_of({"modelDescription.xml": fmi2_xml(extra=xxe).replace(b'modelName="m"', b'modelName="&x;"'),
                       **binary})
    if kind == "no_model_description":
        return zip_of(binary)
    if kind == "windows_only":
        return zip_of({"modelDescription.xml": fmi2_xml(), "binaries/win64/m.dll": b"MZ"})
    if kind == "fmi1":
        return zip_of({"modelDescription.xml": fmi2_xml().replace(b'fmiVersion="2.0"', b'fmiVersion="1.0"'),
                       **binary})
    if kind == "oversize":
        return zip_of({"modelDescription.xml": fmi2_xml(), **binary}) + bytes(9 << 20)
    raise AssertionError(kind)


class TestHostileUploads:
    @pytest.mark.parametrize("kind", sorted(HOSTILE_UPLOADS))
    def test_hostile_upload_is_rejected_and_nothing_is_stored(
        self, kind: str, gateway: Gateway, alice: httpx.Client
    ) -> None:
        before_files = stored_files(gateway)
        before_list = alice.get("/v1/fmus", params={"limit": 100}).json()["data"]
        status, code = HOSTILE_UPLOADS[kind]
        body = assert_problem(upload_bytes(alice, hostile_upload(kind)), status, code)
        if kind == "windows_only":
            assert body["platforms"] == ["win64"]
        assert stored_files(gateway) == before_files
        assert alice.get("/v1/fmus", params={"limit": 100}).json()["data"] == before_list
        assert gateway.alive()


class TestListGetDelete:
    def test_list_is_cursor_paginated_newest_first(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = gateway.client(gateway.create_user())
        ids = [upload_bytes(client, fmus[name].read_bytes()).json()["id"]
               for name in ("VanDerPol", "Feedthrough", "BouncingBall3")]
        first = client.get("/v1/fmus", params={"limit": 2}).json()
        assert [f["id"] for f in first["data"]] == ids[::-1][:2]
        assert first["has_more"] is True
        second = client.get("/v1/fmus", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [f["id"] for f in second["data"]] == [ids[0]]
        assert second["has_more"] is False and second["next_cursor"] is None
        assert "variables" not in first["data"][0]

    def test_list_filters_by_sha256(self, alice: httpx.Client, uploaded: dict[str, dict[str, object]]) -> None:
        fmu = uploaded["Feedthrough"]
        found = alice.get("/v1/fmus", params={"sha256": fmu["sha256"]}).json()["data"]
        assert [f["id"] for f in found] == [fmu["id"]]
        assert alice.get("/v1/fmus", params={"sha256": "0" * 64}).json()["data"] == []
        assert_problem(alice.get("/v1/fmus", params={"sha256": "nothex"}), 422, "validation_error")

    def test_get_returns_variables(self, alice: httpx.Client, uploaded: dict[str, dict[str, object]]) -> None:
        fmu_id = uploaded["Feedthrough"]["id"]
        body = alice.get(f"/v1/fmus/{fmu_id}").json()
        causality = {v["name"]: v["causality"] for v in body["variables"]}
        assert causality["real_in"] == "input" and causality["real_out"] == "output"

    def test_someone_elses_fmu_is_404_everywhere(self, bob: httpx.Client,
                                                 uploaded: dict[str, dict[str, object]]) -> None:
        fmu_id = uploaded["VanDerPol"]["id"]
        assert_problem(bob.get(f"/v1/fmus/{fmu_id}"), 404, "not_found")
        assert_problem(bob.delete(f"/v1/fmus/{fmu_id}"), 404, "not_found")
        assert_problem(bob.post(f"/v1/fmus/{fmu_id}/runs", json={}), 404, "not_found")
        assert fmu_id not in {f["id"] for f in bob.get("/v1/fmus", params={"limit": 100}).json()["data"]}

    def test_delete_removes_the_blob_once_no_one_holds_it(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        data = unique_copy(fmus["VanDerPol"])
        first, second = gateway.client(gateway.create_user()), gateway.client(gateway.create_user())
        a = upload_bytes(first, data).json()
        b = upload_bytes(second, data).json()
        blob_dir, cache = gateway.var_dir / "storage" / "fmus", gateway.var_dir / "cache" / "fmus" / a["sha256"]

        def blob_exists() -> bool:
            return any(a["sha256"] in p.name for p in blob_dir.rglob("*.fmu"))

        assert blob_exists() and cache.is_dir()
        assert first.delete(f"/v1/fmus/{a['id']}").status_code == 204
        assert_problem(first.get(f"/v1/fmus/{a['id']}"), 404, "not_found")
        assert blob_exists() and cache.is_dir()
        assert second.delete(f"/v1/fmus/{b['id']}").status_code == 204
        assert not blob_exists() and not cache.exists()


def unique_copy(path: Path) -> bytes:
    """The FMU plus a random resource file: same model, bytes no other test uploads."""
    buffer = io.BytesIO(path.read_bytes())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("resources/nonce.txt", uuid.uuid4().hex)
    return buffer.getvalue()
