"""The state store's interface: user events and the catalog change log, shared by every replica.

Two backends implement it (``sqlite_store.py``, the embedded default; ``redis_store.py``, for clusters) and
pass the same tests (tests/test_store.py). :func:`open_store` picks one from a location string::

    artifacts/state/coldrec.sqlite      a SQLite file (also ``sqlite:///abs/path``)
    redis://host:6379/0                 a Redis database (``?prefix=name:`` namespaces the keys)

The catalog change log is how a catalog edit reaches every Retriever replica, on every node, and
survives a restart: writers append ``(seq, op, row, vector)``; each replica remembers the last
``seq`` it applied and asks for ``catalog_changes(since=seq)`` before answering, one indexed query.
``seq`` grows strictly in commit order, so a reader never skips a change written before its read.

The log grows with every edit; :meth:`Store.compact_catalog` drops every change that a later change
to the same item supersedes (its docstring says why that is safe while replicas run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

EVENT_KINDS = ("click", "purchase", "rating")
EventKind = Literal["click", "purchase", "rating"]
CatalogOp = Literal["put", "delete"]


@dataclass(frozen=True)
class Event:
    """One user interaction; ``ts`` in unix seconds, ``rating`` only for kind ``rating``."""

    user_id: str
    item_id: str
    kind: str
    ts: float
    rating: float | None = None
    seq: int = 0


@dataclass(frozen=True)
class CatalogChange:
    """One catalog edit. ``row``: the item's fields (item_id, scene, title, ..., text) for ``put``,
    {item_id} for ``delete``; ``vector``: the item tower's (dim,) float32 vector and
    ``model_version`` the model that made it (None for ``delete``)."""

    seq: int
    op: str
    item_id: str
    row: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    model_version: str | None = None


@runtime_checkable
class Store(Protocol):
    def append_event(
        self, user_id: str, item_id: str, kind: str, ts: float | None = None, rating: float | None = None
    ) -> Event: ...

    def history(self, user_id: str, limit: int = 50) -> list[Event]:
        """The user's events, newest first (by ``ts``, then by arrival); [] for an unknown user."""
        ...

    def has_user(self, user_id: str) -> bool: ...

    def put_item(self, row: dict[str, Any], vector: np.ndarray, model_version: str) -> int:
        """Append an upsert to the change log; returns its seq."""
        ...

    def delete_item(self, item_id: str) -> int: ...

    def catalog_changes(self, since: int = 0, limit: int | None = None) -> list[CatalogChange]:
        """Changes with seq > ``since``, oldest first."""
        ...

    def catalog_item(self, item_id: str) -> CatalogChange | None:
        """The latest change for one item (a ``delete`` when it was deleted), None if never changed."""
        ...

    def last_seq(self) -> int: ...

    def compact_catalog(self) -> int:
        """Keep only each item's latest change in the log; returns how many changes were dropped.

        Safe while Retriever replicas run. A replica's index is the saved index plus, for every item
        in the log, that item's *last* change (``Retriever.sync`` applies only each item's last change
        of a batch, and a later batch overwrites an earlier one). Compaction drops a change only when
        a later change to the same item exists, and keeps ``last_seq`` (the newest change is always
        its item's latest). So a replica at seq ``s`` still reads, for every item changed after ``s``,
        that item's last change (its seq is > ``s`` and it was kept); a replica (re)starting from 0
        replays one change per item instead of all; deletes are kept (a deleted item's latest change
        is its delete), so a deleted item of the saved index stays deleted. Both backends compact in
        one atomic step (a SQLite transaction, a Redis Lua script): readers see the log before or
        after, never half compacted.
        """
        ...

    def close(self) -> None: ...


def check_event(user_id: str, item_id: str, kind: str, ts: float | None, rating: float | None) -> float:
    """Validate an event's fields (both backends share the rules); returns the timestamp to store."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id is empty")
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("item_id is empty")
    if kind not in EVENT_KINDS:
        raise ValueError(f"kind must be one of {EVENT_KINDS}, got {kind!r}")
    if (kind == "rating") != (rating is not None):
        raise ValueError("a rating is given with kind 'rating', and only then")
    return time.time() if ts is None else float(ts)


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()


def vector_from_bytes(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(data, dtype=np.float32).copy()


def open_store(location: str) -> Store:
    """A store for ``location``: ``redis://`` / ``rediss://`` URLs select Redis, anything else SQLite."""
    if location.startswith(("redis://", "rediss://", "unix://")):
        from coldrec.store.redis_store import RedisStore

        return RedisStore(location)
    from coldrec.store.sqlite_store import SQLiteStore

    return SQLiteStore(location.removeprefix("sqlite://"))
