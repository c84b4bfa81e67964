"""SQLAlchemy engines for the registry's own tables (sqlite by default, PostgreSQL at scale)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event


def create_engine(url: str) -> sa.Engine:
    """An engine; on sqlite: WAL, a busy timeout and IMMEDIATE transactions so writers queue."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, future=True, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")
            dbapi_conn.execute("PRAGMA foreign_keys = ON")

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, future=True, pool_pre_ping=True, pool_size=10, max_overflow=20)
