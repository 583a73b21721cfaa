"""Every storage backend behaves the same: the local directory and S3 (moto's server on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from s3_server import CREDENTIALS, REGION, S3Server

from app.config import Settings
from app.storage import LocalStorage, Storage, create_storage
from app.storage.s3 import S3Storage, StorageUnavailable

MIB = 1 << 20
# S3's smallest part is 5 MiB; a threshold that low makes a 11 MiB file a 3-part upload.
SMALL_PARTS = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)


@pytest.fixture(scope="session")
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


def s3_storage(s3_server: S3Server, bucket: str) -> S3Storage:
    """A prefix of its own per test: tests share the bucket but never see each other's keys."""
    return S3Storage(s3_server.client(), bucket, prefix=f"t-{uuid.uuid4().hex[:8]}/", transfer=SMALL_PARTS)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_storage(server, request.getfixturevalue("bucket"))


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


class TestRoundTrips:
    def test_bytes_come_back_as_stored(self, storage: Storage) -> None:
        storage.put_bytes("runs/r1/log.txt", b"hello\n")
        assert storage.read_bytes("runs/r1/log.txt") == b"hello\n"
        assert storage.size("runs/r1/log.txt") == 6

    def test_a_file_comes_back_as_stored(self, storage: Storage, tmp_path: Path) -> None:
        data = random_file(tmp_path / "model.fmu", 300_000)
        storage.put_file("fmus/ab/abc.fmu", tmp_path / "model.fmu")
        storage.download("fmus/ab/abc.fmu", tmp_path / "back.fmu")
        assert (tmp_path / "back.fmu").read_bytes() == data

    def test_a_file_above_the_multipart_threshold_comes_back_whole(self, storage: Storage, tmp_path: Path) -> None:
        data = random_file(tmp_path / "big.bin", 11 * MIB + 123)
        storage.put_file("big", tmp_path / "big.bin")
        assert storage.size("big") == len(data)
        storage.download("big", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == data

    def test_overwriting_a_key_replaces_the_blob(self, storage: Storage) -> None:
        storage.put_bytes("k", b"first")
        storage.put_bytes("k", b"second, longer")
        assert storage.read_bytes("k") == b"second, longer"

    def test_empty_blob_round_trips(self, storage: Storage) -> None:
        storage.put_bytes("empty", b"")
        assert storage.exists("empty") and storage.size("empty") == 0 and storage.read_bytes("empty") == b""


class TestIterChunks:
    def test_chunks_are_bounded_and_add_up_to_the_blob(self, storage: Storage) -> None:
        data = os.urandom(3 * MIB + 17)
        storage.put_bytes("result.arrow", data)
        chunks = list(storage.iter_chunks("result.arrow", chunk_size=MIB))
        assert len(chunks) >= 4 and max(len(c) for c in chunks) <= MIB
        assert b"".join(chunks) == data


class TestExistsAndDelete:
    def test_exists_follows_put_and_delete(self, storage: Storage) -> None:
        assert not storage.exists("a/b")
        storage.put_bytes("a/b", b"x")
        assert storage.exists("a/b")
        storage.delete("a/b")
        assert not storage.exists("a/b")

    def test_deleting_twice_or_a_missing_key_is_fine(self, storage: Storage) -> None:
        storage.put_bytes("gone", b"x")
        storage.delete("gone")
        storage.delete("gone")
        storage.delete("never/was")
        assert not storage.exists("gone")

    def test_keys_lists_under_a_prefix(self, storage: Storage) -> None:
        for key in ("runs/r2/result.arrow", "runs/r1/log.txt", "fmus/ab/abc.fmu"):
            storage.put_bytes(key, b"x")
        assert list(storage.keys("runs/")) == ["runs/r1/log.txt", "runs/r2/result.arrow"]
        assert list(storage.keys()) == ["fmus/ab/abc.fmu", "runs/r1/log.txt", "runs/r2/result.arrow"]


class TestMissingKeys:
    def test_size_of_a_missing_key_raises_file_not_found(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundError):
            storage.size("missing")

    def test_iter_chunks_of_a_missing_key_raises_file_not_found(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundError):
            list(storage.iter_chunks("missing"))

    def test_download_of_a_missing_key_raises_and_leaves_dest_as_it_was(
        self, storage: Storage, tmp_path: Path
    ) -> None:
        target = tmp_path / "out"
        target.mkdir()
        (target / "old.fmu").write_bytes(b"old")
        with pytest.raises(FileNotFoundError):
            storage.download("missing", target / "old.fmu")
        with pytest.raises(FileNotFoundError):
            storage.download("missing", target / "new.fmu")
        # No partial file, no temporary left behind.
        assert sorted(p.name for p in target.iterdir()) == ["old.fmu"]
        assert (target / "old.fmu").read_bytes() == b"old"


class TestPresignedUrls:
    def test_local_storage_has_none(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        storage.put_bytes("k", b"x")
        assert storage.presigned_url("k", 60) is None


class TestS3:
    """What only the S3 backend has: multipart uploads, presigned URLs, a key prefix, the bucket check.

    moto's server does not verify request signatures (without its IAM emulation), so a tampered or
    expired presigned URL is not tested here: it would be served all the same."""

    def test_a_large_file_is_uploaded_in_parts(self, s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
        storage = s3_storage(s3_server, bucket)
        random_file(tmp_path / "big.bin", 11 * MIB)
        storage.put_file("big", tmp_path / "big.bin")
        # S3 gives a multipart object the ETag "<md5 of the parts' md5s>-<parts>".
        assert storage.etag("big").endswith("-3")
        random_file(tmp_path / "small.bin", MIB)
        storage.put_file("small", tmp_path / "small.bin")
        assert "-" not in storage.etag("small")

    def test_keys_live_under_the_prefix(self, s3_server: S3Server, bucket: str) -> None:
        storage = s3_storage(s3_server, bucket)
        storage.put_bytes("runs/r1/log.txt", b"x")
        assert f"{storage.prefix}runs/r1/log.txt" in s3_server.keys(bucket)
        assert list(storage.keys()) == ["runs/r1/log.txt"]

    def test_presigned_url_is_fetchable_without_credentials(self, s3_server: S3Server, bucket: str) -> None:
        storage = s3_storage(s3_server, bucket)
        storage.put_bytes("runs/r1/result.arrow", b"table bytes")
        url = storage.presigned_url("runs/r1/result.arrow", 60, filename="r1.arrow",
                                    content_type="application/vnd.apache.arrow.file")
        assert url is not None and url.startswith(s3_server.endpoint_url)
        response = httpx.get(url)
        assert response.status_code == 200 and response.content == b"table bytes"
        assert response.headers["content-type"] == "application/vnd.apache.arrow.file"
        assert response.headers["content-disposition"] == 'attachment; filename="r1.arrow"'

    def test_a_missing_bucket_fails_at_start_up(self, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        settings = Settings(storage="s3", s3_bucket=f"absent-{uuid.uuid4().hex[:8]}",
                            s3_endpoint_url=s3_server.endpoint_url, s3_region=REGION)
        with pytest.raises(StorageUnavailable, match="absent-"):
            create_storage(settings)

    def test_an_existing_bucket_is_accepted(self, s3_server: S3Server, bucket: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        settings = Settings(storage="s3", s3_bucket=bucket, s3_prefix="deploy-a",
                            s3_endpoint_url=s3_server.endpoint_url, s3_region=REGION)
        storage = create_storage(settings)
        assert isinstance(storage, S3Storage) and storage.prefix == "deploy-a/"

    def test_an_unreachable_endpoint_fails_at_start_up(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        with socket_nobody_listens_on() as port:
            settings = Settings(storage="s3", s3_bucket="any", s3_endpoint_url=f"http://127.0.0.1:{port}",
                                s3_region=REGION)
            with pytest.raises(StorageUnavailable, match="unreachable"):
                create_storage(settings)


@contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A loopback port that is bound (so no one else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
