"""The HTTP contract of the recommendation service (request and response bodies).

Static rules live here (types, k >= 1, text not blank, at least one of text / item_ids / user_id);
limits chosen at deploy time (max_k, max_text_chars, max_item_ids) are checked by the ingress,
and :func:`openapi_with_limits` adds them to the deployment's /openapi.json.
"""

from __future__ import annotations

import copy

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator


class RecommendRequest(BaseModel):
    """``POST /recommend``: a user described by free text, clicked items (newest first), a stored
    ``user_id`` (their events, newest first, come after ``item_ids``), or any mix."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = Field(None, description="free text about the user's interests")
    item_ids: list[StrictStr] | None = Field(None, description="items the user touched, newest first")
    k: StrictInt = Field(10, ge=1, description="how many items to return (at most the server's max_k)")
    scene: StrictStr | None = Field(None, description="restrict results to one scene of the catalog")
    user_id: StrictStr | None = Field(None, min_length=1, max_length=200, description="a user with stored events")
    category: StrictStr | None = Field(
        None, min_length=1, max_length=200, description="keep items whose categories or genres contain this (any case)"
    )
    exclude_seen: StrictBool = Field(True, description="never return the profile's items (item_ids and the user's history)")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text is empty or only whitespace")
        return value

    @field_validator("item_ids")
    @classmethod
    def _ids_not_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not v.strip() for v in value):
            raise ValueError("item_ids holds an empty id")
        return value

    @field_validator("user_id", "category")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty or only whitespace")
        return value

    @model_validator(mode="after")
    def _needs_a_profile(self) -> "RecommendRequest":
        if self.text is None and not self.item_ids and self.user_id is None:
            raise ValueError("give at least one of text, item_ids or user_id")
        return self


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float
    reason: str = Field("", description="why: the profile item it is most like, or the query words it matched")


class RecommendResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    items: list[RecommendedItem]
    model_version: str


class Health(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str
    items: int
    model_version: str


def openapi_with_limits(schema: dict, max_k: int, max_text_chars: int, max_item_ids: int) -> dict:
    """A copy of the app's OpenAPI ``schema`` that also states this deployment's limits (checked by
    the ingress, not by the static models above), so clients and generated ones see them."""
    out = copy.deepcopy(schema)
    body = out["components"]["schemas"]["RecommendRequest"]["properties"]
    body["k"]["maximum"] = max_k
    _non_null(body["text"])["maxLength"] = max_text_chars
    _non_null(body["item_ids"])["maxItems"] = max_item_ids
    for parameter in out["paths"]["/items/{item_id}/similar"]["get"]["parameters"]:
        if parameter["name"] == "k":
            parameter["schema"]["maximum"] = max_k
    return out


def _non_null(field: dict) -> dict:
    """The non-null branch of an optional field's ``anyOf`` (the field itself when it has none)."""
    return next((s for s in field.get("anyOf", []) if s.get("type") != "null"), field)
