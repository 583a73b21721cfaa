"""The sha256 of everything the images are built from; `build.sh` labels the API and SDK images with it,
and the tests rebuild an image whose label differs from the working tree's."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("private-api/app", "private-api/pyproject.toml", "private-api/requirements.txt", "private-api/Dockerfile",
           "private-api/runner.Dockerfile", "open-sdk/fmu_gateway_sdk", "open-sdk/pyproject.toml",
           "open-sdk/Dockerfile", "shared-specs/pricing_tiers.json")


def source_digest(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for source in SOURCES:
        path = root / source
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(source_digest() + "\n")
