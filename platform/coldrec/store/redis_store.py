"""The cluster store: a Redis database reached by every replica on every node.

Keys (all under ``prefix``, default ``coldrec:``)::

    events:<user_id>   sorted set, score = ts, member = "<seq 12 digits>|<json>"
    event_seq          counter for event seqs
    catalog            sorted set, score = seq, member = "<seq 12 digits>|<json>" (vector base64)
    catalog_seq        counter for catalog seqs
    catalog_items      hash item_id -> the item's latest catalog member

Each write is one Lua script, which Redis runs atomically: the counter's INCR and the ZADD happen
together, so seq order is commit order and a reader asking for ``seq > since`` never skips one.
Equal scores sort by member, and members start with the zero-padded seq, so ties keep arrival order.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from coldrec.store.base import CatalogChange, Event, check_event

_APPEND = """
local seq = redis.call('INCR', KEYS[1])
local member = string.format('%012d', seq) .. '|' .. ARGV[2]
redis.call('ZADD', KEYS[2], ARGV[1] == '' and seq or ARGV[1], member)
if KEYS[3] then redis.call('HSET', KEYS[3], ARGV[3], member) end
return seq
"""

# The hash holds each item's latest member, so every zset member not among its values is superseded.
_COMPACT = """
local latest = {}
for _, member in ipairs(redis.call('HVALS', KEYS[2])) do latest[member] = true end
local dropped = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not latest[member] then redis.call('ZREM', KEYS[1], member); dropped = dropped + 1 end
end
return dropped
"""


def split_prefix(url: str, default: str = "coldrec:") -> tuple[str, str]:
    """``redis://h:p/db?prefix=x:`` -> (``redis://h:p/db``, ``x:``); redis-py rejects unknown options."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), default)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisStore:
    def __init__(self, url: str, prefix: str | None = None, socket_timeout: float = 5.0):
        import redis

        clean_url, url_prefix = split_prefix(url)
        self.url, self.prefix = clean_url, prefix if prefix is not None else url_prefix
        self._redis = redis.Redis.from_url(clean_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._redis.ping()  # fail at start, with the URL in the message, not on the first request
        self._append = self._redis.register_script(_APPEND)
        self._compact = self._redis.register_script(_COMPACT)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ---- users ------------------------------------------------------------------------
    def append_event(
        self, user_id: str, item_id: str, kind: str, ts: float | None = None, rating: float | None = None
    ) -> Event:
        ts = check_event(user_id, item_id, kind, ts, rating)
        payload = json.dumps({"item_id": item_id, "kind": kind, "ts": ts, "rating": rating})
        seq = self._append(keys=[self._key("event_seq"), self._key("events", user_id)], args=[repr(ts), payload])
        return Event(user_id, item_id, kind, ts, rating, int(seq))

    def history(self, user_id: str, limit: int = 50) -> list[Event]:
        members = self._redis.zrevrange(self._key("events", user_id), 0, int(limit) - 1)
        events = []
        for member in members:
            seq, data = _split(member)
            events.append(Event(user_id, data["item_id"], data["kind"], data["ts"], data["rating"], seq))
        return events

    def has_user(self, user_id: str) -> bool:
        return bool(self._redis.exists(self._key("events", user_id)))

    # ---- catalog ----------------------------------------------------------------------
    def _log(self, op: str, item_id: str, payload: dict[str, Any]) -> int:
        keys = [self._key("catalog_seq"), self._key("catalog"), self._key("catalog_items")]
        body = json.dumps({"op": op, "item_id": item_id, **payload}, default=str)
        return int(self._append(keys=keys, args=["", body, item_id]))

    def put_item(self, row: dict[str, Any], vector: np.ndarray, model_version: str) -> int:
        data = base64.b64encode(np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()).decode()
        return self._log("put", str(row["item_id"]), {"row": row, "vector": data, "model_version": model_version})

    def delete_item(self, item_id: str) -> int:
        return self._log("delete", item_id, {"row": {"item_id": item_id}})

    def catalog_changes(self, since: int = 0, limit: int | None = None) -> list[CatalogChange]:
        kwargs = {"start": 0, "num": int(limit)} if limit is not None else {}
        members = self._redis.zrangebyscore(self._key("catalog"), f"({int(since)}", "+inf", **kwargs)
        return [_change(m) for m in members]

    def catalog_item(self, item_id: str) -> CatalogChange | None:
        member = self._redis.hget(self._key("catalog_items"), item_id)
        return None if member is None else _change(member)

    def last_seq(self) -> int:
        return int(self._redis.get(self._key("catalog_seq")) or 0)

    def compact_catalog(self) -> int:
        """Drop superseded catalog changes in one Lua script (atomic; safe while replicas read: see Store.compact_catalog).

        The script walks the whole log once, blocking Redis for that long (about a second per million
        changes): run it every few thousand edits, not per edit.
        """
        return int(self._compact(keys=[self._key("catalog"), self._key("catalog_items")]))

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, and resetting a demo)."""
        keys = list(self._redis.scan_iter(match=self.prefix + "*", count=500))
        return int(self._redis.delete(*keys)) if keys else 0

    def close(self) -> None:
        self._redis.close()


def _split(member: bytes) -> tuple[int, dict[str, Any]]:
    seq, _, body = member.decode().partition("|")
    return int(seq), json.loads(body)


def _change(member: bytes) -> CatalogChange:
    seq, data = _split(member)
    vector = data.get("vector")
    array = None if vector is None else np.frombuffer(base64.b64decode(vector), dtype=np.float32).copy()
    return CatalogChange(seq, data["op"], data["item_id"], data.get("row", {}), array, data.get("model_version"))
