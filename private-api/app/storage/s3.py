"""Blob storage in an S3 bucket (AWS S3 or any S3-compatible server), through boto3.

Objects are written whole (a PUT or a completed multipart upload), so readers never see a
partial blob. A missing key raises ``FileNotFoundError``, as on the local backend.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.storage.base import Storage

if TYPE_CHECKING:
    from app.config import Settings

# S3 answers a missing object with one of these, depending on the call (HEAD has no body, hence "404").
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
DEFAULT_TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)


class StorageUnavailable(RuntimeError):
    """The configured bucket cannot be used (missing, unreachable or forbidden); raised at start-up."""


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_CODES


class S3Storage(Storage):
    def __init__(self, client: Any, bucket: str, *, prefix: str = "",
                 transfer: TransferConfig = DEFAULT_TRANSFER) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.transfer = transfer

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """Credentials come from boto3's usual chain: ``AWS_*`` environment, shared config, instance role."""
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region or None,
            config=Config(signature_version="s3v4", retries={"mode": "standard"}))
        return cls(client, settings.s3_bucket, prefix=settings.s3_prefix)

    def check_bucket(self) -> None:
        """Fail fast with a clear message: buckets are made by the operator, never by the gateway."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise StorageUnavailable(
                f"S3 bucket {self.bucket!r} is not usable (HeadBucket answered {code}); create it and grant "
                "this process s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 bucket {self.bucket!r} is unreachable: {exc}") from exc

    def check(self) -> None:
        self.check_bucket()

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put_file(self, key: str, source: Path) -> None:
        # upload_file streams from disk and switches to a multipart upload above the threshold.
        self.client.upload_file(str(source), self.bucket, self._key(key), Config=self.transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def _head(self, key: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"no blob {key!r}") from exc
            raise
        return head

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def etag(self, key: str) -> str:
        """The object's ETag (``"<md5>-<parts>"`` for a multipart upload)."""
        return str(self._head(key)["ETag"]).strip('"')

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"no blob {key!r}") from exc
            raise
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def download(self, key: str, dest: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.tmp-")
        os.close(fd)
        try:
            self.client.download_file(self.bucket, self._key(key), tmp, Config=self.transfer)
            os.replace(tmp, dest)
        except ClientError as exc:
            Path(tmp).unlink(missing_ok=True)
            if _is_missing(exc):
                raise FileNotFoundError(f"no blob {key!r}") from exc
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        # DeleteObject of a missing key succeeds.
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                    Prefix=self._key(prefix))
        for page in pages:
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(self.prefix):]

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None,
                      content_type: str | None = None) -> str | None:
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        if content_type is not None:
            params["ResponseContentType"] = content_type
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        return url
