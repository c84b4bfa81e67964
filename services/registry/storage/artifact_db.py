"""The `artifacts` table: one row per recorded artifact, keyed by its SHA-256 (sqlite or PostgreSQL).

A row is what makes stored bytes visible as an artifact (see domain/artifacts.py). Rows are only
ever inserted: the same bytes uploaded again keep the first uploader and time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import sqlalchemy as sa

from services.registry.domain.artifacts import ArtifactRecord
from services.registry.domain.records import ActorRecord

metadata = sa.MetaData()

artifacts_table = sa.Table(
    "artifacts",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("layout", sa.String(16), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("uploaded_by", sa.Text, nullable=False),  # ActorRecord as JSON
    sa.Column("upload_time", sa.DateTime(timezone=True), nullable=False),
)

_PAGE = 1000


def _utc(value: dt.datetime) -> dt.datetime:
    # sqlite returns naive datetimes; every time we store is UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _record(row: sa.Row) -> ArtifactRecord:
    return ArtifactRecord(
        digest=row.digest,
        size_bytes=row.size_bytes,
        layout=row.layout,
        filename=row.filename,
        uploaded_by=ActorRecord.from_dict(json.loads(row.uploaded_by)),
        upload_time=_utc(row.upload_time),
    )


class SqlArtifactIndex:
    """ArtifactIndex on SQLAlchemy; the engine comes from storage/db.create_engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def insert_if_absent(self, record: ArtifactRecord) -> tuple[ArtifactRecord, bool]:
        values = {
            "digest": record.digest,
            "size_bytes": record.size_bytes,
            "layout": record.layout,
            "filename": record.filename,
            "uploaded_by": json.dumps(record.uploaded_by.to_dict(), sort_keys=True),
            "upload_time": record.upload_time.astimezone(dt.UTC),
        }
        created = True
        try:
            with self.engine.begin() as conn:
                conn.execute(artifacts_table.insert().values(**values))
        except sa.exc.IntegrityError:
            created = False  # a concurrent or earlier upload of the same bytes recorded it first
        stored = self.get(record.digest)
        if stored is None:  # pragma: no cover - rows are never deleted
            raise RuntimeError(f"artifact row sha256:{record.digest} vanished after insert")
        return stored, created

    def get(self, digest: str) -> ArtifactRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(artifacts_table).where(artifacts_table.c.digest == digest)).first()
        return None if row is None else _record(row)

    def iter_digests(self) -> Iterator[str]:
        """Ascending, a page at a time, so that start-up recovery never loads the whole table."""
        last = ""
        while True:
            with self.engine.connect() as conn:
                page = (
                    conn.execute(
                        sa.select(artifacts_table.c.digest)
                        .where(artifacts_table.c.digest > last)
                        .order_by(artifacts_table.c.digest)
                        .limit(_PAGE)
                    )
                    .scalars()
                    .all()
                )
            yield from page
            if len(page) < _PAGE:
                return
            last = page[-1]
