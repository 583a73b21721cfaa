"""Blob storage backends, chosen by settings."""

from app.config import Settings
from app.storage.base import Storage
from app.storage.local import LocalStorage


def create_storage(settings: Settings) -> Storage:
    """The configured backend; an S3 bucket that is missing or unreachable fails here, at start-up."""
    if settings.storage == "s3":
        # boto3 is imported only by deployments that use it.
        from app.storage.s3 import S3Storage

        storage = S3Storage.from_settings(settings)
        storage.check_bucket()
        return storage
    return LocalStorage(settings.resolved_storage_dir)


__all__ = ["LocalStorage", "Storage", "create_storage"]
