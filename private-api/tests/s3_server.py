"""moto's S3 server on 127.0.0.1: a real HTTP server speaking the S3 API, for the storage suite and the
end-to-end tests of ``FMU_GATEWAY_STORAGE=s3``. Its objects live in this test process's memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
# moto accepts any credentials; explicit ones keep boto3 from looking for real ones anywhere else.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}


@dataclass
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name=REGION,
        ).client("s3", endpoint_url=self.endpoint_url, config=Config(signature_version="s3v4"))

    def create_bucket(self) -> str:
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def gateway_env(self, bucket: str, prefix: str = "", **overrides: str) -> dict[str, str]:
        """Environment of a gateway (or worker) process that stores its blobs in ``bucket``."""
        return {
            **CREDENTIALS,
            "AWS_EC2_METADATA_DISABLED": "true",
            "FMU_GATEWAY_STORAGE": "s3",
            "FMU_GATEWAY_S3_BUCKET": bucket,
            "FMU_GATEWAY_S3_PREFIX": prefix,
            "FMU_GATEWAY_S3_ENDPOINT_URL": self.endpoint_url,
            "FMU_GATEWAY_S3_REGION": REGION,
            **overrides,
        }


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
