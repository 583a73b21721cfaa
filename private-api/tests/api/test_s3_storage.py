"""``FMU_GATEWAY_STORAGE=s3`` end to end: real gateway (and worker) processes storing their blobs in
moto's S3 server on 127.0.0.1. FMUs, results and logs land in the bucket under the prefix; a failed
upload stores nothing; deleting an FMU removes its object; with presigned results on, the arrow
result is a 307 to the bucket, which plain HTTP, httpx with our API key and the SDK all follow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient
from fmu_gateway_sdk.auth import ApiKeyAuth, TokenAuth
from gateway_process import Gateway, running_gateway
from problems import assert_problem
from redis_keys import REDIS_URL
from s3_server import S3Server
from test_workers import cluster

ARROW = "application/vnd.apache.arrow.file"


@dataclass
class S3Gateway:
    gateway: Gateway
    s3: S3Server
    bucket: str
    prefix: str

    def objects(self) -> list[str]:
        """The keys this gateway stored, without its prefix."""
        return [key[len(self.prefix):] for key in self.s3.keys(self.bucket) if key.startswith(self.prefix)]


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@contextmanager
def s3_gateway(s3: S3Server, bucket: str, *, presign: bool) -> Iterator[S3Gateway]:
    prefix = f"gw-{uuid.uuid4().hex[:8]}/"
    env = s3.gateway_env(bucket, prefix, FMU_GATEWAY_S3_PRESIGN_RESULTS=str(presign).lower(),
                         FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0")
    with running_gateway("s3", **env) as gateway:
        yield S3Gateway(gateway, s3, bucket, prefix)


@pytest.fixture(scope="module")
def plain(s3_server: S3Server, bucket: str) -> Iterator[S3Gateway]:
    """A gateway on S3 that serves results itself."""
    with s3_gateway(s3_server, bucket, presign=False) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def presigning(s3_server: S3Server, bucket: str) -> Iterator[S3Gateway]:
    """A gateway on S3 that redirects arrow results to presigned URLs."""
    with s3_gateway(s3_server, bucket, presign=True) as gateway:
        yield gateway


def upload(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def finished_run(client: httpx.Client, fmu_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={"stop_time": 1.0})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "succeeded", body
    return body


def blob_key(sha256: str) -> str:
    return f"fmus/{sha256[:2]}/{sha256}.fmu"


def arrow_table(data: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


class TestFmuLifecycle:
    def test_upload_run_and_delete_keep_the_bucket_in_step(self, plain: S3Gateway, fmus: dict[str, Path]) -> None:
        client = plain.gateway.client(plain.gateway.create_user())
        fmu = upload(client, fmus["VanDerPol"])
        assert blob_key(fmu["sha256"]) in plain.objects()
        run = finished_run(client, fmu["id"])
        assert f"runs/{run['id']}/result.arrow" in plain.objects()
        # A log is stored when there is one; an empty one is not, and reads as empty.
        log = client.get(f"/v1/runs/{run['id']}/log")
        assert log.status_code == 200
        assert (f"runs/{run['id']}/log.txt" in plain.objects()) == bool(log.content)
        assert client.delete(f"/v1/fmus/{fmu['id']}").status_code == 204
        assert blob_key(fmu["sha256"]) not in plain.objects()
        # A run's result outlives the FMU it came from.
        assert f"runs/{run['id']}/result.arrow" in plain.objects()

    def test_a_failed_upload_stores_nothing(self, plain: S3Gateway) -> None:
        client = plain.gateway.client(plain.gateway.create_user())
        before = plain.objects()
        assert_problem(client.post("/v1/fmus", files={"file": ("broken.fmu", b"not a zip at all")}), 422, "not_a_zip")
        assert plain.objects() == before


class TestResultsThroughTheApi:
    def test_every_format_is_served_by_the_gateway(self, plain: S3Gateway, fmus: dict[str, Path]) -> None:
        client = plain.gateway.client(plain.gateway.create_user())
        run = finished_run(client, upload(client, fmus["VanDerPol"])["id"])
        response = client.get(f"/v1/runs/{run['id']}/result")
        assert response.status_code == 200 and response.headers["content-type"] == ARROW
        table = arrow_table(response.content)
        assert table.num_rows > 1 and "time" in table.column_names
        csv = client.get(f"/v1/runs/{run['id']}/result", params={"format": "csv"})
        assert csv.status_code == 200 and csv.text.startswith('"time"')
        assert client.get(f"/v1/runs/{run['id']}/log").status_code == 200


class TestPresignedResults:
    def test_arrow_result_redirects_to_the_bucket(self, presigning: S3Gateway, fmus: dict[str, Path]) -> None:
        client = presigning.gateway.client(presigning.gateway.create_user())
        run = finished_run(client, upload(client, fmus["VanDerPol"])["id"])
        response = client.get(f"/v1/runs/{run['id']}/result")
        assert response.status_code == 307
        assert response.headers["cache-control"] == "no-store"
        location = response.headers["location"]
        assert location.startswith(f"{presigning.s3.endpoint_url}/{presigning.bucket}/{presigning.prefix}runs/")
        # The URL alone is the credential: no API key goes with it.
        direct = httpx.get(location)
        assert direct.status_code == 200 and direct.headers["content-type"] == ARROW
        assert direct.headers["content-disposition"] == f'attachment; filename="{run["id"]}.arrow"'
        assert arrow_table(direct.content).num_rows > 1

    def test_other_formats_are_still_converted_by_the_gateway(self, presigning: S3Gateway,
                                                             fmus: dict[str, Path]) -> None:
        client = presigning.gateway.client(presigning.gateway.create_user())
        run = finished_run(client, upload(client, fmus["VanDerPol"])["id"])
        response = client.get(f"/v1/runs/{run['id']}/result", params={"format": "json"})
        assert response.status_code == 200 and "time" in response.json()["data"]

    def test_someone_elses_run_gets_no_url(self, presigning: S3Gateway, fmus: dict[str, Path]) -> None:
        owner = presigning.gateway.client(presigning.gateway.create_user())
        other = presigning.gateway.client(presigning.gateway.create_user())
        run = finished_run(owner, upload(owner, fmus["VanDerPol"])["id"])
        assert_problem(other.get(f"/v1/runs/{run['id']}/result"), 404, "not_found")

    @pytest.mark.parametrize("auth_mode", ["api_key", "token"])
    def test_following_the_redirect_leaves_the_credentials_behind(self, presigning: S3Gateway,
                                                                  fmus: dict[str, Path], auth_mode: str) -> None:
        api_key = presigning.gateway.create_user()
        client = presigning.gateway.client(api_key)
        run = finished_run(client, upload(client, fmus["VanDerPol"])["id"])
        sent: list[httpx.Request] = []
        # The SDK's own credentials, on an httpx client that follows redirects as the SDK does.
        auth = ApiKeyAuth(api_key) if auth_mode == "api_key" else TokenAuth(api_key)
        with httpx.Client(base_url=presigning.gateway.base_url, auth=auth, follow_redirects=True,
                          event_hooks={"request": [sent.append]}) as follower:
            response = follower.get(f"/v1/runs/{run['id']}/result")
        assert response.status_code == 200 and arrow_table(response.content).num_rows > 1
        to_s3 = [r for r in sent if str(r.url).startswith(presigning.s3.endpoint_url)]
        to_gateway = [r for r in sent if r not in to_s3]
        assert len(to_s3) == 1 and sent[-1] is to_s3[0]
        assert "authorization" not in to_s3[0].headers
        assert to_gateway and all(r.headers["authorization"].startswith("Bearer ") for r in to_gateway)

    def test_the_sdk_reads_a_presigned_result(self, presigning: S3Gateway, fmus: dict[str, Path]) -> None:
        api_key = presigning.gateway.create_user()
        with FMUGatewayClient(api_key, presigning.gateway.base_url) as sdk:
            fmu = sdk.fmus.upload(fmus["VanDerPol"])
            run = sdk.runs.create(fmu, stop_time=1.0, wait=60)
            result = sdk.runs.result(run)
            assert result.to_arrow().num_rows > 1 and "time" in result.to_arrow().column_names
            assert sdk.runs.download_result(run, format="csv").startswith(b'"time"')

    def test_a_submission_asking_for_a_presigned_result_is_answered_with_the_run(
            self, presigning: S3Gateway, fmus: dict[str, Path]) -> None:
        """A POST cannot be redirected to a GET: ?result=arrow gets the run (the SDK then follows the
        result route's redirect); a format the gateway converts still comes in the answer."""
        api_key = presigning.gateway.create_user()
        client = presigning.gateway.client(api_key)
        fmu_id = upload(client, fmus["VanDerPol"])["id"]
        url = f"/v1/fmus/{fmu_id}/runs"
        arrow = client.post(url, params={"wait": 60, "result": "arrow"}, json={"stop_time": 1.0, "cache": False})
        assert arrow.status_code == 200 and arrow.json()["status"] == "succeeded", arrow.text
        csv = client.post(url, params={"wait": 60, "result": "csv"}, json={"stop_time": 1.0, "cache": False})
        assert csv.status_code == 200 and csv.text.startswith('"time"'), csv.text
        with FMUGatewayClient(api_key, presigning.gateway.base_url) as sdk:
            assert sdk.simulate(fmu_id, stop_time=1.0, cache=False).to_arrow().num_rows > 1

    def test_the_async_sdk_reads_a_presigned_result(self, presigning: S3Gateway, fmus: dict[str, Path]) -> None:
        api_key = presigning.gateway.create_user()

        async def fetch() -> pa.Table:
            async with AsyncFMUGatewayClient(api_key, presigning.gateway.base_url) as sdk:
                fmu = await sdk.fmus.upload(fmus["VanDerPol"])
                run = await sdk.runs.create(fmu, stop_time=1.0, wait=60)
                return (await sdk.runs.result(run)).to_arrow()

        table = asyncio.run(fetch())
        assert table.num_rows > 1 and "time" in table.column_names


class TestWorkersOnS3:
    def test_a_worker_fetches_the_fmu_from_the_bucket(self, s3_server: S3Server, bucket: str,
                                                      fmus: dict[str, Path]) -> None:
        """A worker with an empty FMU cache of its own refills it from the bucket."""
        prefix = f"cl-{uuid.uuid4().hex[:8]}/"
        with cluster("s3-workers", REDIS_URL, workers=1, **s3_server.gateway_env(bucket, prefix)) as c:
            client = c.gateway.client(c.gateway.create_user())
            fmu = upload(client, fmus["Feedthrough"])
            run = finished_run(client, fmu["id"])
            assert f"{prefix}runs/{run['id']}/result.arrow" in s3_server.keys(bucket)
            worker_cache = c.workers[0].var_dir / "cache" / "fmus" / fmu["sha256"]
            assert worker_cache.is_dir()
            response = client.get(f"/v1/runs/{run['id']}/result")
            assert response.status_code == 200 and arrow_table(response.content).num_rows >= 1
