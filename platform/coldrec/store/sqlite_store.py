"""The embedded store: one SQLite file, shared by every process on one machine.

WAL mode lets readers (every Retriever replica, every request) run while one writer commits;
``busy_timeout`` makes a second writer wait for the lock instead of failing. ``seq`` is the
change table's INTEGER PRIMARY KEY: SQLite assigns it inside the write transaction, and write
transactions are serialised, so seq order is commit order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.store.base import CatalogChange, Event, check_event, vector_bytes, vector_from_bytes

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL, rating REAL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts DESC, seq DESC);
CREATE TABLE IF NOT EXISTS catalog_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL, item_id TEXT NOT NULL, row TEXT NOT NULL, vector BLOB, model_version TEXT
);
CREATE INDEX IF NOT EXISTS catalog_changes_by_item ON catalog_changes (item_id, seq DESC);
"""


class SQLiteStore:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per store object, guarded by a lock: Serve may call from several threads.
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock:
            return int(self._conn.execute(sql, params).lastrowid)

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---- users ------------------------------------------------------------------------
    def append_event(
        self, user_id: str, item_id: str, kind: str, ts: float | None = None, rating: float | None = None
    ) -> Event:
        ts = check_event(user_id, item_id, kind, ts, rating)
        seq = self._write(
            "INSERT INTO events (user_id, item_id, kind, ts, rating) VALUES (?, ?, ?, ?, ?)",
            (user_id, item_id, kind, ts, rating),
        )
        return Event(user_id, item_id, kind, ts, rating, seq)

    def history(self, user_id: str, limit: int = 50) -> list[Event]:
        rows = self._read(
            "SELECT item_id, kind, ts, rating, seq FROM events WHERE user_id = ? ORDER BY ts DESC, seq DESC LIMIT ?",
            (user_id, int(limit)),
        )
        return [Event(user_id, item, kind, ts, rating, seq) for item, kind, ts, rating, seq in rows]

    def has_user(self, user_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM events WHERE user_id = ? LIMIT 1", (user_id,)))

    # ---- catalog ----------------------------------------------------------------------
    def put_item(self, row: dict[str, Any], vector: np.ndarray, model_version: str) -> int:
        item_id = str(row["item_id"])
        return self._write(
            "INSERT INTO catalog_changes (op, item_id, row, vector, model_version) VALUES ('put', ?, ?, ?, ?)",
            (item_id, json.dumps(row, default=str), vector_bytes(vector), model_version),
        )

    def delete_item(self, item_id: str) -> int:
        return self._write(
            "INSERT INTO catalog_changes (op, item_id, row) VALUES ('delete', ?, ?)",
            (item_id, json.dumps({"item_id": item_id})),
        )

    def catalog_changes(self, since: int = 0, limit: int | None = None) -> list[CatalogChange]:
        rows = self._read(
            "SELECT seq, op, item_id, row, vector, model_version FROM catalog_changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(since), -1 if limit is None else int(limit)),
        )
        return [_change(r) for r in rows]

    def catalog_item(self, item_id: str) -> CatalogChange | None:
        rows = self._read(
            "SELECT seq, op, item_id, row, vector, model_version FROM catalog_changes "
            "WHERE item_id = ? ORDER BY seq DESC LIMIT 1",
            (item_id,),
        )
        return _change(rows[0]) if rows else None

    def last_seq(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(seq), 0) FROM catalog_changes", ())[0][0])

    def compact_catalog(self) -> int:
        """Drop superseded catalog changes in one transaction (safe while replicas read: see Store.compact_catalog)."""
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM catalog_changes WHERE seq NOT IN "
                "(SELECT MAX(seq) FROM catalog_changes GROUP BY item_id)"
            )
            return int(cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _change(r: tuple) -> CatalogChange:
    seq, op, item_id, row, vector, model_version = r
    return CatalogChange(int(seq), op, item_id, json.loads(row), vector_from_bytes(vector), model_version)
