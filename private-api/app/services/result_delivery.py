"""How a run's result reaches the client: through the API, or straight from the bucket."""

from __future__ import annotations

from app.config import Settings
from app.services import result_formats
from app.services.run_service import result_key
from app.storage import Storage


def presigned_result_url(storage: Storage, settings: Settings, run_id: str, format: str) -> str | None:
    """A short-lived URL of the stored result when the operator turned presigned results on and the
    backend can sign one; None to serve it through the API. Only ``arrow`` is stored as it is sent:
    the other formats are converted on the way out."""
    if not settings.s3_presign_results or format != "arrow":
        return None
    fmt = result_formats.FORMATS[format]
    return storage.presigned_url(result_key(run_id), settings.s3_presign_ttl_s,
                                 filename=f"{run_id}.{fmt.extension}", content_type=fmt.media_type)
