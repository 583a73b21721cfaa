"""``client.fmus``: upload (hash first, send only unknown bytes), list, get, page variables, update,
delete; share one with another user at a price per run, and see who ran it."""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

from fmu_gateway_sdk._base_client import AsyncRequester, Params, SyncRequester
from fmu_gateway_sdk._fmu_file import FileIdentity, FmuFile, FmuPath, TransferProgress
from fmu_gateway_sdk.models import Fmu, FmuSummary, FmuUsage, Grant, Variable, page_from_response

log = logging.getLogger("fmu_gateway_sdk")

#: An uploaded FMU: its id or the object itself.
FmuRef = str | FmuSummary

PAGE_SIZE = 100
VARIABLES_PAGE_SIZE = 1000


def fmu_id(fmu: FmuRef) -> str:
    return fmu.id if isinstance(fmu, FmuSummary) else str(fmu)


def fmu_path(fmu: FmuRef) -> str:
    return f"/v1/fmus/{quote(fmu_id(fmu), safe='')}"


def _matching(found: list[FmuSummary], sha256: str) -> FmuSummary | None:
    # Checked here too, so a server without the ?sha256= filter never makes us skip an upload wrongly;
    # a model shared with you is not yours: running it would pay its owner.
    return next((f for f in found if f.sha256 == sha256 and f.shared_by is None), None)


def _grants_path(fmu: FmuRef) -> str:
    return f"{fmu_path(fmu)}/grants"


def _grant_path(fmu: FmuRef, grant: Grant | str) -> str:
    grant_id = grant.id if isinstance(grant, Grant) else grant
    return f"{_grants_path(fmu)}/{quote(grant_id, safe='')}"


def _grant_body(email: str, price_credits_per_run: int) -> dict[str, str | int]:
    return {"email": email, "price_credits_per_run": price_credits_per_run}


def _variables_params(page_size: int, cursor: str | None, q: str | None) -> Params:
    return {"limit": page_size, "cursor": cursor, "q": q or None}


class KnownUploads:
    """The FMU each local file was uploaded as (or found to be) by this client, by the file's
    identity: a file unchanged since is neither hashed nor looked up again (``simulate`` of one path
    in a loop is one request a run). A stale entry (the FMU deleted meanwhile) is forgotten by
    ``forget`` and the file looked up again."""

    #: Files remembered at most; beyond it the longest-remembered is forgotten (looked up again if met).
    MAX_FILES = 1024

    def __init__(self) -> None:
        self._by_file: dict[FileIdentity, FmuSummary] = {}

    def get(self, file: FmuFile) -> FmuSummary | None:
        return self._by_file.get(file.identity)

    def remember(self, file: FmuFile, fmu: FmuSummary) -> FmuSummary:
        self._by_file.pop(file.identity, None)
        self._by_file[file.identity] = fmu
        while len(self._by_file) > self.MAX_FILES:
            del self._by_file[next(iter(self._by_file))]
        return fmu

    def forget_file(self, file: FmuFile) -> None:
        self._by_file.pop(file.identity, None)

    def forget(self, fmu: FmuRef) -> None:
        gone = fmu_id(fmu)
        self._by_file = {identity: f for identity, f in self._by_file.items() if f.id != gone}


class Fmus:
    def __init__(self, api: SyncRequester) -> None:
        self._api = api
        self.known = KnownUploads()

    def upload(self, path: FmuPath, *, progress: bool = False) -> Fmu:
        """Upload a ``.fmu`` file and return the FMU with its variables.

        The file is hashed first; if the server already has these bytes the upload is skipped and the
        existing FMU is returned. ``progress=True`` shows a progress bar (on stderr).
        """
        self.known.forget_file(FmuFile.open(path))  # asked to upload: the server is asked again
        found = self.ensure_uploaded(path, progress=progress)
        return found if isinstance(found, Fmu) else self.get(found)

    def ensure_uploaded(self, path: FmuPath, *, progress: bool = False) -> FmuSummary:
        """Like :meth:`upload`, but an FMU the server already had comes back as listed (without its
        variables), saving a request when only its id is needed; a file this client uploaded or
        found before, unchanged since, comes back without a request (see :class:`KnownUploads`)."""
        file = FmuFile.open(path)
        if (known := self.known.get(file)) is not None:
            return known
        with TransferProgress(progress) as bar:
            digest = file.sha256(bar)
            existing = self.find(digest)
            if existing is not None:
                log.debug("%s: the server already has sha256 %s (%s); not uploading", file.path, digest, existing.id)
                return self.known.remember(file, existing)
            response = self._api.request("POST", "/v1/fmus", params={"filename": file.path.name},
                                         content=lambda: file.chunks(bar), headers=file.upload_headers())
        return self.known.remember(file, Fmu.from_response(response))

    def find(self, sha256: str) -> FmuSummary | None:
        """Your FMU with these bytes (hex SHA-256 of the ``.fmu`` file), if you uploaded it."""
        found, _ = page_from_response(FmuSummary, self._api.request(
            "GET", "/v1/fmus", params={"sha256": sha256.lower(), "limit": PAGE_SIZE}))
        return _matching(found, sha256.lower())

    def list(self, *, page_size: int = PAGE_SIZE) -> Iterator[FmuSummary]:
        """Every FMU you uploaded or that was shared with you (``shared_by`` set), newest first; pages
        are fetched as you iterate."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(FmuSummary, self._api.request(
                "GET", "/v1/fmus", params={"limit": page_size, "cursor": cursor}))
            yield from items
            if cursor is None:
                return

    def get(self, fmu: FmuRef) -> Fmu:
        """The FMU with its model variables (the first 1,000 of a larger model: see :meth:`variables`)."""
        return Fmu.from_response(self._api.request("GET", fmu_path(fmu)))

    def variables(self, fmu: FmuRef, *, q: str | None = None,
                  page_size: int = VARIABLES_PAGE_SIZE) -> Iterator[Variable]:
        """Every variable of the model in model order, or those whose name or description contains
        ``q`` (any case); pages are fetched as you iterate."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Variable, self._api.request(
                "GET", f"{fmu_path(fmu)}/variables", params=_variables_params(page_size, cursor, q)))
            yield from items
            if cursor is None:
                return

    def update(self, fmu: FmuRef, *, deterministic: bool) -> Fmu:
        """Say whether your model is deterministic: ``False`` (it uses randomness or wall-clock time)
        keeps its runs out of the run cache."""
        return Fmu.from_response(self._api.request("PATCH", fmu_path(fmu), json={"deterministic": deterministic}))

    def delete(self, fmu: FmuRef) -> None:
        self._api.request("DELETE", fmu_path(fmu))
        self.known.forget(fmu)

    def share(self, fmu: FmuRef, *, email: str, price_credits_per_run: int = 0) -> Grant:
        """Let the user with ``email`` run your FMU (not download it); each of their runs that
        succeeds pays you ``price_credits_per_run`` credits, less your tier's platform fee.
        :class:`ConflictError` (``grant_exists``) if they already have an active grant."""
        return Grant.from_response(self._api.request("POST", _grants_path(fmu),
                                                     json=_grant_body(email, price_credits_per_run)))

    def grants(self, fmu: FmuRef) -> builtins.list[Grant]:
        """Every grant of your FMU, the revoked ones included (``revoked_at`` set)."""
        found: list[Grant] = []
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Grant, self._api.request(
                "GET", _grants_path(fmu), params={"limit": PAGE_SIZE, "cursor": cursor}))
            found.extend(items)
            if cursor is None:
                return found

    def revoke_grant(self, fmu: FmuRef, grant: Grant | str) -> Grant:
        """End a grant: the grantee can start no more runs of the model (runs already placed go on)."""
        return Grant.from_response(self._api.request("DELETE", _grant_path(fmu, grant)))

    def usage(self, fmu: FmuRef) -> FmuUsage:
        """Who ran your shared FMU and what it earned you, by grantee and by day."""
        return FmuUsage.from_response(self._api.request("GET", f"{fmu_path(fmu)}/usage"))


class AsyncFmus:
    def __init__(self, api: AsyncRequester) -> None:
        self._api = api
        self.known = KnownUploads()

    async def upload(self, path: FmuPath, *, progress: bool = False) -> Fmu:
        """Upload a ``.fmu`` file and return the FMU with its variables.

        The file is hashed first; if the server already has these bytes the upload is skipped and the
        existing FMU is returned. ``progress=True`` shows a progress bar (on stderr).
        """
        self.known.forget_file(FmuFile.open(path))  # asked to upload: the server is asked again
        found = await self.ensure_uploaded(path, progress=progress)
        return found if isinstance(found, Fmu) else await self.get(found)

    async def ensure_uploaded(self, path: FmuPath, *, progress: bool = False) -> FmuSummary:
        """See :meth:`Fmus.ensure_uploaded`."""
        file = FmuFile.open(path)
        if (known := self.known.get(file)) is not None:
            return known
        with TransferProgress(progress) as bar:
            digest = file.sha256(bar)
            existing = await self.find(digest)
            if existing is not None:
                log.debug("%s: the server already has sha256 %s (%s); not uploading", file.path, digest, existing.id)
                return self.known.remember(file, existing)
            response = await self._api.request("POST", "/v1/fmus", params={"filename": file.path.name},
                                               content=lambda: file.achunks(bar), headers=file.upload_headers())
        return self.known.remember(file, Fmu.from_response(response))

    async def find(self, sha256: str) -> FmuSummary | None:
        """Your FMU with these bytes (hex SHA-256 of the ``.fmu`` file), if you uploaded it."""
        found, _ = page_from_response(FmuSummary, await self._api.request(
            "GET", "/v1/fmus", params={"sha256": sha256.lower(), "limit": PAGE_SIZE}))
        return _matching(found, sha256.lower())

    async def list(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[FmuSummary]:
        """Every FMU you uploaded or that was shared with you (``shared_by`` set), newest first; pages
        are fetched as you iterate (``async for``)."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(FmuSummary, await self._api.request(
                "GET", "/v1/fmus", params={"limit": page_size, "cursor": cursor}))
            for item in items:
                yield item
            if cursor is None:
                return

    async def get(self, fmu: FmuRef) -> Fmu:
        """The FMU with its model variables (the first 1,000 of a larger model: see :meth:`variables`)."""
        return Fmu.from_response(await self._api.request("GET", fmu_path(fmu)))

    async def variables(self, fmu: FmuRef, *, q: str | None = None,
                        page_size: int = VARIABLES_PAGE_SIZE) -> AsyncIterator[Variable]:
        """Every variable of the model in model order, or those whose name or description contains
        ``q`` (any case); pages are fetched as you iterate (``async for``)."""
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Variable, await self._api.request(
                "GET", f"{fmu_path(fmu)}/variables", params=_variables_params(page_size, cursor, q)))
            for item in items:
                yield item
            if cursor is None:
                return

    async def update(self, fmu: FmuRef, *, deterministic: bool) -> Fmu:
        """Say whether your model is deterministic (see :meth:`Fmus.update`)."""
        return Fmu.from_response(await self._api.request("PATCH", fmu_path(fmu),
                                                         json={"deterministic": deterministic}))

    async def delete(self, fmu: FmuRef) -> None:
        await self._api.request("DELETE", fmu_path(fmu))
        self.known.forget(fmu)

    async def share(self, fmu: FmuRef, *, email: str, price_credits_per_run: int = 0) -> Grant:
        """Let the user with ``email`` run your FMU at a price per run (see :meth:`Fmus.share`)."""
        return Grant.from_response(await self._api.request("POST", _grants_path(fmu),
                                                           json=_grant_body(email, price_credits_per_run)))

    async def grants(self, fmu: FmuRef) -> builtins.list[Grant]:
        """Every grant of your FMU, the revoked ones included (``revoked_at`` set)."""
        found: list[Grant] = []
        cursor: str | None = None
        while True:
            items, cursor = page_from_response(Grant, await self._api.request(
                "GET", _grants_path(fmu), params={"limit": PAGE_SIZE, "cursor": cursor}))
            found.extend(items)
            if cursor is None:
                return found

    async def revoke_grant(self, fmu: FmuRef, grant: Grant | str) -> Grant:
        """End a grant: the grantee can start no more runs of the model (runs already placed go on)."""
        return Grant.from_response(await self._api.request("DELETE", _grant_path(fmu, grant)))

    async def usage(self, fmu: FmuRef) -> FmuUsage:
        """Who ran your shared FMU and what it earned you, by grantee and by day."""
        return FmuUsage.from_response(await self._api.request("GET", f"{fmu_path(fmu)}/usage"))
