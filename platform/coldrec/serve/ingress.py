"""Ingress: the HTTP front door (FastAPI) that composes encoder -> retriever -> reranker.

    POST   /recommend            {"text", "item_ids", "user_id", "k", "scene", "category", "exclude_seen"}
                                 -> {"items": [{"item_id", "title", "score", "reason"}], "model_version"}
    POST   /items                {"item_id", "title", "categories", "brand", "description", "genres", "year", "scene"}
    PUT    /items/{id}           the same fields, replacing the item's     -> {"item_id", "op", "seq"}
    DELETE /items/{id}                                                     -> {"item_id", "op", "seq"}
    GET    /items/{id}/similar?k=10&scene=
    POST   /events               {"user_id", "item_id", "kind": click|purchase|rating, "rating", "ts"}
    GET    /users/{id}/profile   top categories / brands / genres, recent items, key words
    GET    /healthz, /readyz

/recommend requests are validated one by one (every 4xx below is decided per request), then
coalesced (:mod:`coldrec.serve.coalesce`): the requests that queued while earlier ones were in
flight make one ``encoder.encode_many`` -> ``retriever.search_many`` -> ``reranker.rerank_many``
chain, and the item-id lookups that build their profiles one ``retriever.lookup``. Each Serve call
costs CPU on both sides whatever it carries, so under load this divides that cost by the batch size;
a request at an idle replica starts at once. Batch size and slots: ``user_config`` in serve_configs.

Catalog edits go to the store's change log; every Retriever replica applies the log before its next
answer, so an acknowledged edit is visible to the very next request. Every ``compact_every`` edits
(per ingress replica) the ingress compacts that log to each item's latest change (safe while
replicas read it: ``Store.compact_catalog``), so it grows with the catalog, not with the edits.
Every bad request is a 4xx with a message, and each route's OpenAPI entry lists the ones it gives:
422 for malformed bodies and values, always in FastAPI's validation shape (re-rendered by
:mod:`coldrec.serve.errors` without echoing the input), 404 for unknown items or users, 409 for an
item that exists already, 413 for text longer than max_text_chars; 503 when the store cannot be
reached.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.

import asyncio
import dataclasses
import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Path, Query
from ray import serve
from ray.serve.handle import DeploymentHandle

from coldrec.config import TextConfig
from coldrec.serve.coalesce import Coalescer
from coldrec.serve.errors import error_responses, install_error_handlers, invalid
from coldrec.serve.metrics import batch_recorder, install_metrics
from coldrec.serve.profile import informative_words, summarize
from coldrec.serve.schemas import Health, RecommendedItem, RecommendRequest, RecommendResponse, openapi_with_limits
from coldrec.serve.state_schemas import (
    CatalogWrite, EventIn, EventStored, ItemFields, ItemIn, SimilarItem, SimilarResponse, UserProfile,
)  # fmt: skip
from coldrec.store import Store, open_store
from coldrec.text import render_item_text, render_profile_text, strip_scene_prefix

api = FastAPI(title="coldrec", description="Cold-start recommendations from text, clicked items and user events.")
install_error_handlers(api)
install_metrics(api)
ItemIdPath = Path(min_length=1, max_length=200)
logger = logging.getLogger("ray.serve")
# Coalescing for apps built in code (tests, notebooks); serve_configs/*.yaml set it as user_config.
# No wait: a free slot takes whatever queued meanwhile, so batches grow with the load by themselves and
# a lone request never waits. 16 = the encoder's batch on a laptop; two batches in flight let one be
# encoded while the other is searched and reranked.
BATCH_DEFAULTS = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One validated /recommend, ready for the graph: the best ``k`` of ``candidates`` retrieved items."""

    profile: str  # the user tower's input text
    k: int
    candidates: int
    exclude: list[str]
    scene: str | None
    category: str | None
    context: dict[str, Any]  # the reranker's: {"history": [...], "words": [...], "text": ...}


def compact_if_due(store: Store, writes: int, every: int) -> int | None:
    """Compact the catalog log when ``writes`` (this replica's count so far) is a multiple of
    ``every`` (0 = never); returns how many changes were dropped, None when not due."""
    if every <= 0 or writes % every:
        return None
    return store.compact_catalog()


@serve.deployment
@serve.ingress(api)
class Ingress:
    """Handles arrive through ``__init__`` (typed DeploymentHandle); limits come from AppArgs."""

    def __init__(
        self,
        encoder: DeploymentHandle,
        retriever: DeploymentHandle,
        reranker: DeploymentHandle,
        model_version: str,
        profile_items: int = 10,
        scene_prefix: bool = False,
        text: dict[str, Any] | None = None,
        default_scene: str | None = None,
        max_k: int = 100,
        max_text_chars: int = 2000,
        max_item_ids: int = 50,
        candidates: int = 100,
        store: str | None = None,
        max_history: int = 50,
        compact_every: int = 1000,
    ):
        self.encoder = encoder
        self.retriever = retriever
        self.reranker = reranker
        self.model_version = model_version
        self.profile_items = profile_items
        self.scene_prefix = scene_prefix
        self.text = TextConfig.model_validate(text or {})  # the model's item templates and history order
        self.default_scene = default_scene
        self.max_k = max_k
        self.max_text_chars = max_text_chars
        self.max_item_ids = max_item_ids
        # /openapi.json and /docs state this deployment's limits (one Ingress per replica process).
        api.openapi_schema = openapi_with_limits(api.openapi(), max_k, max_text_chars, max_item_ids)
        self.candidates = candidates
        self.max_history = max_history
        self.store: Store | None = open_store(store) if store else None
        self._scenes: set[str] = set()
        self.compact_every = compact_every
        self._writes = 0
        # Concurrent /recommend requests share their downstream calls (coldrec.serve.coalesce).
        self._recommendations = Coalescer(self._recommend_many, **BATCH_DEFAULTS,
                                          on_batch=batch_recorder("recommend"))  # fmt: skip
        self._lookups = Coalescer(self._lookup_many, **BATCH_DEFAULTS, on_batch=batch_recorder("lookup"))

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: {max_batch_size, batch_wait_timeout_s, max_concurrent_batches} for coalescing
        /recommend requests; applied live, from the next batch on."""
        for coalescer in (self._recommendations, self._lookups):
            coalescer.configure(config)

    # ---- health ---------------------------------------------------------------------------
    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        # Asks the encoder too: the proxy routes to the ingress before the encoder has loaded its
        # model, and "ok" should mean a /recommend would be answered now.
        encoder, index = self.encoder.info.remote(), self.retriever.info.remote()
        await encoder
        return Health(status="ok", items=(await index)["items"], model_version=self.model_version)

    @api.get("/readyz", responses=error_responses(503))
    async def readyz(self) -> dict[str, Any]:
        """200 once the encoder, a retriever (with the catalog log applied) and the store all answer."""
        try:
            encoder, index = self.encoder.info.remote(), self.retriever.info.remote()
            await encoder
            info = await index
            await self._call(lambda store: store.last_seq())
        except Exception as err:  # any part not up yet means "not ready", with the reason
            detail = err.detail if isinstance(err, HTTPException) else f"{type(err).__name__}: {err}"
            raise HTTPException(503, detail={"ready": False, "reason": str(detail)[:500]})
        return {"ready": True, "items": info["items"], "catalog_seq": info["catalog_seq"],
                "model_version": self.model_version}  # fmt: skip

    # ---- recommendations ------------------------------------------------------------------
    @api.post("/recommend", response_model=RecommendResponse, responses=error_responses(400, 404, 413, 503))
    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        self._check_limits(request)
        item_ids = list(dict.fromkeys(request.item_ids or []))  # newest first, repeats dropped
        history = await self._history(request.user_id) if request.user_id is not None else []
        history_ids = [i for i in dict.fromkeys(e.item_id for e in history) if i not in item_ids]
        wanted = item_ids + history_ids
        known: dict[str, dict[str, Any]] = await self._lookups(wanted) if wanted else {}
        unknown = [i for i in item_ids if i not in known]  # history items deleted since are simply skipped
        if unknown:
            raise HTTPException(404, detail={"message": f"{len(unknown)} unknown item_ids", "item_ids": unknown})
        if request.scene is not None and request.scene not in await self._known_scenes(request.scene):
            raise invalid(("body", "scene"), f"unknown scene {request.scene!r}; known: {sorted(self._scenes)}")
        profile_ids = [i for i in wanted if i in known]
        if not profile_ids and request.text is None:
            raise invalid(("body", "user_id"), f"user {request.user_id!r} has no items left in the catalog; add text")

        profile = self._profile_text(request, profile_ids, known)
        exclude = profile_ids if request.exclude_seen else []
        context = {
            "history": [{"item_id": i, "title": known[i]["title"], "text": known[i].get("text", ""),
                         "vector": known[i]["vector"]} for i in profile_ids],
            "words": informative_words(request.text),
            "text": request.text,  # free text alone is reranked with its own weights (coldrec.rank.free_text)
        }
        job = Recommendation(profile, request.k, max(self.candidates, request.k), exclude, request.scene,
                             request.category, context)  # fmt: skip
        ranked = await self._recommendations(job)
        return RecommendResponse(items=[RecommendedItem(**r) for r in ranked], model_version=self.model_version)

    async def _recommend_many(self, jobs: list[Recommendation]) -> list[list[dict[str, Any]] | BaseException]:
        """encode -> search -> rerank for every coalesced request: one call per deployment for the batch.

        Composed without waiting in between: each DeploymentResponse is handed to the next call. A
        request whose own step failed gets its exception back in its place (the others are answered);
        a call that fails as a whole raises, and the Coalescer gives every request that error."""
        vectors = self.encoder.encode_many.remote([job.profile for job in jobs])
        candidates = self.retriever.search_many.remote(
            vectors, [{"k": j.candidates, "exclude": j.exclude, "scene": j.scene, "category": j.category} for j in jobs]
        )
        return await self.reranker.rerank_many.remote(
            candidates, [{"k": j.k, "exclude": j.exclude, "context": j.context} for j in jobs]
        )

    async def _lookup_many(self, wanted: list[list[str]]) -> list[dict[str, dict[str, Any]]]:
        """One ``retriever.lookup`` (with vectors) for the item ids of every coalesced request."""
        known = await self.retriever.lookup.remote(list(dict.fromkeys(i for ids in wanted for i in ids)), True)
        return [{i: known[i] for i in ids if i in known} for ids in wanted]

    @api.get("/items/{item_id}/similar", response_model=SimilarResponse, responses=error_responses(404))
    async def similar(
        self, item_id: str = ItemIdPath, k: int = Query(10, ge=1), scene: str | None = Query(None, max_length=200)
    ) -> SimilarResponse:
        if k > self.max_k:
            raise invalid(("query", "k"), f"k={k} is more than max_k={self.max_k}")
        items = await self.retriever.similar.remote(item_id, k, scene)
        if items is None:
            raise HTTPException(404, detail=f"unknown item {item_id!r}")
        return SimilarResponse(item_id=item_id, items=[SimilarItem(**i) for i in items], model_version=self.model_version)

    # ---- catalog --------------------------------------------------------------------------
    @api.post("/items", status_code=201, response_model=CatalogWrite, responses=error_responses(400, 409, 503))
    async def add_item(self, item: ItemIn) -> CatalogWrite:
        if await self.retriever.lookup.remote([item.item_id]):
            raise HTTPException(409, detail=f"item {item.item_id!r} exists; PUT /items/{{id}} replaces it")
        return await self._put_item(item.item_id, item)

    @api.put("/items/{item_id}", response_model=CatalogWrite, responses=error_responses(400, 404, 503))
    async def replace_item(self, fields: ItemFields, item_id: str = ItemIdPath) -> CatalogWrite:
        await self._require_item(item_id)
        return await self._put_item(item_id, fields)

    @api.delete("/items/{item_id}", response_model=CatalogWrite, responses=error_responses(404, 503))
    async def delete_item(self, item_id: str = ItemIdPath) -> CatalogWrite:
        await self._require_item(item_id)
        seq = await self._call(lambda store: store.delete_item(item_id))
        await self._wrote()
        return CatalogWrite(item_id=item_id, op="delete", seq=seq)

    async def _put_item(self, item_id: str, fields: ItemFields) -> CatalogWrite:
        row: dict[str, Any] = {"item_id": item_id, **fields.model_dump(exclude={"item_id"})}
        row["scene"] = row["scene"] or self.default_scene
        if not render_item_text(row, False, self.text):
            fields = self.text.template(row["scene"]).fields
            raise invalid(("body",), f"the model's text template for scene {row['scene']!r} reads {fields}, "
                                     "and this item has none of them")
        row["text"] = render_item_text(row, self.scene_prefix, self.text)
        vectors = await self.encoder.encode_items.remote([row["text"]], [item_id], [row["scene"] or ""])  # (1, dim)
        seq = await self._call(lambda store: store.put_item(row, vectors[0], self.model_version))
        await self._wrote()
        return CatalogWrite(item_id=item_id, op="put", seq=seq)

    async def _wrote(self) -> None:
        self._writes += 1
        try:
            dropped = await self._call(lambda store: compact_if_due(store, self._writes, self.compact_every))
        except Exception as err:  # the edit is stored already; a failed compaction is retried N writes later
            logger.warning(f"catalog log compaction failed: {type(err).__name__}: {err}")
            return
        if dropped is not None:
            logger.info(f"compacted the catalog log after {self._writes} writes: {dropped} changes dropped")

    async def _require_item(self, item_id: str) -> None:
        if not await self.retriever.lookup.remote([item_id]):
            raise HTTPException(404, detail=f"unknown item {item_id!r}")

    # ---- users ----------------------------------------------------------------------------
    @api.post("/events", status_code=201, response_model=EventStored, responses=error_responses(400, 404, 503))
    async def add_event(self, event: EventIn) -> EventStored:
        await self._require_item(event.item_id)
        stored = await self._call(
            lambda store: store.append_event(event.user_id, event.item_id, event.kind, event.ts, event.rating)
        )
        return EventStored(**dataclasses.asdict(stored))

    @api.get("/users/{user_id}/profile", response_model=UserProfile, responses=error_responses(404, 503))
    async def user_profile(self, user_id: str = Path(min_length=1, max_length=200)) -> UserProfile:
        history = await self._history(user_id)
        ids = list(dict.fromkeys(e.item_id for e in history))
        known = await self.retriever.lookup.remote(ids)
        texts = [self._plain_text(known[i]) for i in ids if i in known]
        profile = render_profile_text(texts, max_items=self.profile_items, order=self.text.history_order)
        events = [dataclasses.asdict(e) for e in history]
        return UserProfile(**summarize(user_id, events, known, profile_text=profile))

    async def _history(self, user_id: str):
        history = await self._call(lambda store: store.history(user_id, self.max_history))
        if not history:
            raise HTTPException(404, detail=f"unknown user {user_id!r} (no events stored)")
        return history

    # ---- helpers --------------------------------------------------------------------------
    async def _call(self, fn):
        """Run one store call off the event loop (SQLite may wait on a writer's lock)."""
        if self.store is None:
            raise HTTPException(503, detail="no state store configured (AppArgs.store)")
        return await asyncio.to_thread(fn, self.store)

    def _check_limits(self, request: RecommendRequest) -> None:
        if request.k > self.max_k:
            raise invalid(("body", "k"), f"k={request.k} is more than max_k={self.max_k}")
        if request.text is not None and len(request.text) > self.max_text_chars:
            raise HTTPException(413, detail=f"text has {len(request.text)} characters, the limit is {self.max_text_chars}")
        if request.item_ids and len(request.item_ids) > self.max_item_ids:
            given = len(request.item_ids)
            raise invalid(("body", "item_ids"), f"{given} item_ids given, the limit is {self.max_item_ids}")

    def _profile_text(self, request: RecommendRequest, item_ids: list[str], known: dict[str, dict[str, Any]]) -> str:
        """Exactly what training feeds the user tower (coldrec.text.render_profile_text)."""
        scene = None
        if self.scene_prefix:
            newest = known[item_ids[0]]["scene"] if item_ids else ""
            scene = request.scene or newest or self.default_scene
        texts = [self._plain_text(known[i]) for i in item_ids]
        return render_profile_text(texts, free_text=request.text, max_items=self.profile_items, scene=scene,
                                   order=self.text.history_order)

    def _plain_text(self, row: dict[str, Any]) -> str:
        """A catalog row's text as profiles join it: without the scene prefix its index text carries
        when the model uses one (training's profiles put the scene once, in front)."""
        return strip_scene_prefix(row["text"], row.get("scene")) if self.scene_prefix else row["text"]

    async def _known_scenes(self, wanted: str) -> set[str]:
        # Items added at run time may bring a new scene: ask the retriever again before refusing.
        if wanted not in self._scenes:
            self._scenes = set((await self.retriever.info.remote())["scenes"])
        return self._scenes
