"""Artifacts: content-addressed bytes, streamed in, verified, recorded, streamed out.

The blob store (libs/artifacts) hashes while streaming and commits under the digest only when
digest and size match; this module adds what makes the bytes an *artifact*: layout and filename
checks, tar validation while the bytes pass, the `artifacts` row that says who uploaded them and
when, the audit events, and start-up recovery after a crash.

Visibility rule: an artifact exists when its row exists. The row is written only after the blob
has committed, so a crash between the two leaves a blob without a row. Such a blob is invisible
(GetArtifact / DownloadArtifact / CreateModelVersion treat it as absent) and `recover()` removes
it at the next start: its upload never returned OK, so the client retries, and nothing can refer
to it. Recording it instead would invent an uploader and a layout nobody declared. Shared cloud
buckets are not swept (another replica may be between commit and row); there an unrecorded blob
stays invisible until the same bytes are uploaded again, which records them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from libs.artifacts.blob_store import BlobStore, SizeLimitExceeded, check_digest
from libs.auth.principal import Principal
from libs.errors.domain_errors import DataLoss, DomainError, InvalidArgument, NotFound
from services.registry.domain.auditing import Auditor
from services.registry.domain.records import ActorRecord
from services.registry.domain.tar_stream import TarStreamValidator

log = logging.getLogger(__name__)

LAYOUTS = ("FILE", "TAR")
MAX_FILENAME_BYTES = 255  # what ext4, xfs and most file systems allow for one name


class OutOfRange(DomainError):
    """A position beyond the end of a resource (gRPC OUT_OF_RANGE); not in libs/errors yet."""

    status = "OUT_OF_RANGE"


@dataclasses.dataclass(frozen=True)
class ArtifactRecord:
    digest: str
    size_bytes: int
    layout: str
    filename: str
    uploaded_by: ActorRecord
    upload_time: dt.datetime

    @property
    def subject(self) -> str:
        return f"artifacts/sha256:{self.digest}"


@dataclasses.dataclass(frozen=True)
class UploadMetadata:
    """What the client declares before the bytes: checked before a single byte is stored."""

    digest: str
    size_bytes: int
    layout: str
    filename: str


class ArtifactIndex(Protocol):
    """The `artifacts` table (storage/artifact_db.py)."""

    def insert_if_absent(self, record: ArtifactRecord) -> tuple[ArtifactRecord, bool]:
        """Store `record` unless its digest is there; return the stored row and whether it is new."""
        ...

    def get(self, digest: str) -> ArtifactRecord | None: ...

    def iter_digests(self) -> Iterator[str]:
        """Every recorded digest in ascending order."""
        ...


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What `recover()` found at start."""

    staging_removed: int
    orphans_removed: tuple[str, ...]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_filename(name: str) -> str:
    """A bare file name: no directories, no control or invisible formatting characters, <= 255 bytes.

    Refused rather than silently rewritten: the name is part of the GxP record of what was
    uploaded, so the registry keeps what the user sent or nothing.
    """
    if "/" in name or "\\" in name:
        raise InvalidArgument(f"filename {name[:80]!r} must be a bare name without path separators")
    if name in (".", ".."):
        raise InvalidArgument(f"filename {name!r} is not a file name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise InvalidArgument("filename contains control or invisible formatting characters")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise InvalidArgument(f"filename is longer than {MAX_FILENAME_BYTES} bytes (UTF-8)")
    return name


def _validated_tar(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pass the chunks through while checking the tar; raises before the blob store can commit."""
    validator = TarStreamValidator()
    for chunk in chunks:
        validator.feed(chunk)
        yield chunk
    validator.finish()


class Artifacts:
    """Upload, look up and download artifacts; every success is audited."""

    def __init__(
        self,
        blobs: BlobStore,
        index: ArtifactIndex,
        auditor: Auditor,
        *,
        issuer: str = "",
        service_principal: Principal | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.blobs = blobs
        self.index = index
        self.auditor = auditor
        self.issuer = issuer
        self.clock = clock
        now = clock()
        # The registry acts on its own behalf for start-up recovery.
        self._self = service_principal or Principal(
            subject="service:registry",
            roles=frozenset({"service"}),
            issued_at=now,
            expires_at=now,
            name="registry",
            kind="service",
        )

    # ---- start-up ----------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Remove abandoned staging files and (single-writer stores) blobs without a row.

        Call once at start, before serving: then no upload is in flight in this process, and a
        single-writer store has no other writer.
        """
        staging = self.blobs.cleanup_staging()
        orphans: list[str] = []
        if self.blobs.single_writer:
            recorded = self.index.iter_digests()
            current = next(recorded, None)
            for digest in self.blobs.list_digests():  # both ascending: a merge, constant memory
                while current is not None and current < digest:
                    current = next(recorded, None)
                if digest != current:
                    orphans.append(digest)
        for digest in orphans:
            self.blobs.delete(digest)
            self.auditor.record(
                self._self,
                "artifact.discard",
                f"artifacts/sha256:{digest}",
                {"reason": "stored bytes without an artifact record (upload interrupted before it completed)"},
                payload_digest=digest,
            )
        if staging or orphans:
            log.warning("artifact recovery", extra={"staging_removed": staging, "orphans_removed": len(orphans)})
        return Recovery(staging, tuple(orphans))

    # ---- upload ------------------------------------------------------------------------

    def check_metadata(self, meta: UploadMetadata) -> UploadMetadata:
        """Everything that can be refused before the first byte arrives."""
        check_digest(meta.digest)
        if meta.layout not in LAYOUTS:
            raise InvalidArgument("layout must be ARTIFACT_LAYOUT_FILE or ARTIFACT_LAYOUT_TAR")
        if meta.size_bytes < 0:
            raise InvalidArgument("size_bytes must not be negative")
        if meta.size_bytes > self.blobs.max_size:
            raise SizeLimitExceeded(meta.size_bytes, self.blobs.max_size)
        check_filename(meta.filename)
        return meta

    def upload(self, actor: Principal, meta: UploadMetadata, chunks: Iterable[bytes]) -> tuple[ArtifactRecord, bool]:
        """Stream `chunks` into the store; return the artifact and whether it is newly recorded.

        Bytes that are already recorded are received and verified again (and rewrite the stored
        copy, which repairs it if it had rotted) and the existing record is returned.
        """
        self.check_metadata(meta)
        stream = _validated_tar(chunks) if meta.layout == "TAR" else chunks
        self.blobs.put(stream, digest=meta.digest, size=meta.size_bytes)
        candidate = ArtifactRecord(
            digest=meta.digest,
            size_bytes=meta.size_bytes,
            layout=meta.layout,
            filename=meta.filename,
            uploaded_by=ActorRecord.of(actor, self.issuer),
            upload_time=self.clock(),
        )
        record, created = self.index.insert_if_absent(candidate)
        self.auditor.record(
            actor,
            "artifact.upload",
            record.subject,
            {
                "size_bytes": meta.size_bytes,
                "layout": meta.layout,
                "filename": meta.filename,
                "already_stored": not created,
            },
            payload_digest=record.digest,
        )
        return record, created

    # ---- read --------------------------------------------------------------------------

    def get(self, digest: str) -> ArtifactRecord:
        check_digest(digest)
        record = self.index.get(digest)
        if record is None:
            raise NotFound(f"no artifact sha256:{digest}")
        return record

    def layout_of(self, digest: str) -> str | None:
        """The layout of a recorded artifact, or None (what the model catalog asks before a version)."""
        record = self.index.get(check_digest(digest))
        return None if record is None else record.layout

    def download(self, actor: Principal, digest: str, offset: int = 0) -> tuple[ArtifactRecord, Iterator[bytes]]:
        """The record and the verified bytes from `offset`; the iterator raises DataLoss at the end
        if the stored bytes no longer hash to the digest (after auditing "artifact.corrupt")."""
        check_digest(digest)
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        record = self.get(digest)
        if offset > record.size_bytes:
            raise OutOfRange(f"offset {offset} is beyond the end of the artifact ({record.size_bytes} bytes)")
        stored = self.blobs.stat(digest)
        if stored is None or stored.size != record.size_bytes:
            found = "missing" if stored is None else f"{stored.size} bytes instead of {record.size_bytes}"
            self._corrupt(actor, record, {"problem": f"stored bytes {found}"})
            raise DataLoss(f"the stored bytes of sha256:{digest} are {found}; the copy is lost")

        def on_mismatch(expected: str, actual: str) -> None:
            self._corrupt(actor, record, {"problem": "hash mismatch", "actual_sha256": actual})

        return record, self.blobs.read(digest, offset, on_mismatch=on_mismatch)

    def _corrupt(self, actor: Principal, record: ArtifactRecord, details: dict) -> None:
        log.error("artifact corrupt", extra={"digest": record.digest, **details})
        self.auditor.record(
            actor, "artifact.corrupt", record.subject, details, outcome="failure", payload_digest=record.digest
        )
