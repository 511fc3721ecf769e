"""Shared serving state: user events and the catalog change log (SQLite or Redis)."""

from coldrec.store.base import CatalogChange, Event, Store, open_store

__all__ = ["CatalogChange", "Event", "Store", "open_store"]
