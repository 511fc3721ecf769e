"""The HTTP contract of the stateful endpoints: catalog edits, user events, profiles, similar items.

Static rules live here (types, lengths, finite numbers, at least one text field); whether an
item or user exists is checked by the ingress against the retriever and the store.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

Id = Field(min_length=1, max_length=200)


class ItemFields(BaseModel):
    """``PUT /items/{id}``: an item's text fields (they replace the old ones, all of them)."""

    model_config = ConfigDict(extra="forbid")

    scene: StrictStr | None = Field(None, max_length=200, description="default: the index's scene")
    title: StrictStr | None = Field(None, max_length=2000)
    categories: StrictStr | None = Field(None, max_length=2000)
    brand: StrictStr | None = Field(None, max_length=500)
    description: StrictStr | None = Field(None, max_length=10000)
    genres: StrictStr | None = Field(None, max_length=1000)
    year: StrictStr | None = Field(None, max_length=20)

    @model_validator(mode="after")
    def _has_text(self) -> "ItemFields":
        if not any((getattr(self, f) or "").strip() for f in ("title", "description", "categories", "brand")):
            raise ValueError("give at least one of title, description, categories or brand (non-blank)")
        return self


class ItemIn(ItemFields):
    """``POST /items``: a new item, searchable in the very next request."""

    item_id: StrictStr = Id

    @field_validator("item_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip() or value != value.strip() or "/" in value:
            raise ValueError("item_id must be non-blank, without surrounding spaces or '/'")
        return value


class CatalogWrite(BaseModel):
    """The acknowledgement of a catalog edit: every request after it sees the change."""

    item_id: str
    op: Literal["put", "delete"]
    seq: int = Field(description="the change's position in the catalog log")


class EventIn(BaseModel):
    """``POST /events``: one interaction; the user's next /recommend already uses it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: StrictStr = Id
    item_id: StrictStr = Id
    kind: Literal["click", "purchase", "rating"]
    rating: float | None = Field(None, ge=0, le=10, description="only with kind 'rating'")
    ts: float | None = Field(None, ge=0, description="unix seconds; default: now")

    @field_validator("user_id", "item_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty or only whitespace")
        return value

    @model_validator(mode="after")
    def _rating_with_kind(self) -> "EventIn":
        if (self.kind == "rating") != (self.rating is not None):
            raise ValueError("give a rating with kind 'rating', and only then")
        return self


class EventStored(BaseModel):
    user_id: str
    item_id: str
    kind: str
    ts: float
    rating: float | None
    seq: int


class ProfileItem(BaseModel):
    item_id: str
    title: str
    kind: str
    ts: float
    rating: float | None = None


class Count(BaseModel):
    name: str
    count: int


class UserProfile(BaseModel):
    """``GET /users/{id}/profile``: what the recommender knows, in words."""

    user_id: str
    events: int = Field(description="events read (the most recent, up to the server's max_history)")
    recent_items: list[ProfileItem]
    top_categories: list[Count]
    top_brands: list[Count]
    top_genres: list[Count]
    key_words: list[str]
    profile_text: str = Field(description="the user tower's input built from this history")


class SimilarItem(BaseModel):
    item_id: str
    title: str
    score: float


class SimilarResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    item_id: str
    items: list[SimilarItem]
    model_version: str
