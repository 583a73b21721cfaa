"""Blob storage backends, chosen by settings."""

from app.config import Settings
from app.storage.base import Storage
from app.storage.local import LocalStorage


def create_storage(settings: Settings) -> Storage:
    return LocalStorage(settings.resolved_storage_dir)


__all__ = ["LocalStorage", "Storage", "create_storage"]
