"""Ingress: the HTTP front door (FastAPI) that composes encoder -> retriever -> reranker.

    POST /recommend  {"text": "...", "item_ids": ["..."], "k": 10, "scene": "..."}
                     -> {"items": [{"item_id", "title", "score"}], "model_version"}
    GET  /healthz    -> {"status": "ok", "items": N, "model_version"}

Every bad request is a 4xx with a message: 422 for malformed bodies and values (FastAPI's
validation, re-rendered below without echoing the input), 404 for unknown item ids (listed),
413 for text longer than max_text_chars.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime.

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from coldrec.serve.schemas import Health, RecommendedItem, RecommendRequest, RecommendResponse
from coldrec.text import render_profile_text

api = FastAPI(title="coldrec", description="Cold-start recommendations from text and clicked items.")


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default answer embeds the input and the raw exception object; keep what helps a client.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


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
        default_scene: str | None = None,
        max_k: int = 100,
        max_text_chars: int = 2000,
        max_item_ids: int = 50,
        candidates: int = 100,
    ):
        self.encoder = encoder
        self.retriever = retriever
        self.reranker = reranker
        self.model_version = model_version
        self.profile_items = profile_items
        self.scene_prefix = scene_prefix
        self.default_scene = default_scene
        self.max_k = max_k
        self.max_text_chars = max_text_chars
        self.max_item_ids = max_item_ids
        self.candidates = candidates
        self._scenes: set[str] | None = None

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        # Asks the encoder too: the proxy routes to the ingress before the encoder has loaded its
        # model, and "ok" should mean a /recommend would be answered now.
        encoder, index = self.encoder.info.remote(), self.retriever.info.remote()
        await encoder
        return Health(status="ok", items=(await index)["items"], model_version=self.model_version)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        self._check_limits(request)
        item_ids = list(dict.fromkeys(request.item_ids or []))  # newest first, repeats dropped
        known: dict[str, dict[str, str]] = await self.retriever.lookup.remote(item_ids) if item_ids else {}
        unknown = [i for i in item_ids if i not in known]
        if unknown:
            raise HTTPException(404, detail={"message": f"{len(unknown)} unknown item_ids", "item_ids": unknown})
        if request.scene is not None and request.scene not in await self._known_scenes():
            raise HTTPException(422, detail=f"unknown scene {request.scene!r}; known: {sorted(self._scenes or ())}")

        profile = self._profile_text(request, item_ids, known)
        # Compose without waiting in between: each DeploymentResponse is handed to the next call.
        vector = self.encoder.encode.remote(profile)
        candidates = self.retriever.search.remote(vector, max(self.candidates, request.k), item_ids, request.scene)
        ranked: list[dict[str, Any]] = await self.reranker.rerank.remote(candidates, request.k, item_ids)
        return RecommendResponse(items=[RecommendedItem(**r) for r in ranked], model_version=self.model_version)

    def _check_limits(self, request: RecommendRequest) -> None:
        if request.k > self.max_k:
            raise HTTPException(422, detail=f"k={request.k} is more than max_k={self.max_k}")
        if request.text is not None and len(request.text) > self.max_text_chars:
            raise HTTPException(413, detail=f"text has {len(request.text)} characters, the limit is {self.max_text_chars}")
        if request.item_ids and len(request.item_ids) > self.max_item_ids:
            raise HTTPException(
                422, detail=f"{len(request.item_ids)} item_ids given, the limit is {self.max_item_ids}"
            )

    def _profile_text(self, request: RecommendRequest, item_ids: list[str], known: dict[str, dict[str, str]]) -> str:
        """Exactly what training feeds the user tower (coldrec.text.render_profile_text)."""
        scene = None
        if self.scene_prefix:
            newest = known[item_ids[0]]["scene"] if item_ids else ""
            scene = request.scene or newest or self.default_scene
        texts = [known[i]["text"] for i in item_ids]
        return render_profile_text(texts, free_text=request.text, max_items=self.profile_items, scene=scene)

    async def _known_scenes(self) -> set[str]:
        if self._scenes is None:  # the index is fixed for a replica's life: ask once
            self._scenes = set((await self.retriever.info.remote())["scenes"])
        return self._scenes
