"""ProfileEncoder: the user tower as a Serve deployment, batching concurrent requests
(and the item tower, unbatched, for items added to the catalog at run time).

The Ingress sends a whole batch of coalesced requests in one ``encode_many`` call; its texts go
through the same ``@serve.batch`` queue as single ``encode`` calls, so batches from several Ingress
replicas still merge into one forward pass."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from coldrec.config import ModelConfig


@serve.deployment
class ProfileEncoder:
    """Profile text in, unit vector (dim,) out.

    ``settings``: the EncoderSettings (as a dict) the index was built with, so that a bare
    backbone gets the same token budgets; ``expected_dim``: the index's dimension, checked at
    start so a model/index mismatch fails the deployment instead of every request.
    Batch size and wait are operational settings: ``user_config`` in serve_configs/*.yaml.
    """

    def __init__(self, model_path: str, settings: dict[str, Any], expected_dim: int | None = None):
        from coldrec.model.encoder import TextEncoder

        model_config = ModelConfig(
            backbone=model_path,
            max_user_tokens=settings.get("max_user_tokens", 128),
            max_item_tokens=settings.get("max_item_tokens", 64),
            scene_prefix=settings.get("scene_prefix", False),
            text=settings.get("text") or {},
        )
        self.encoder = TextEncoder.load(model_path, model_config=model_config)
        if expected_dim is not None and self.encoder.dim != expected_dim:
            raise ValueError(
                f"model {model_path} makes {self.encoder.dim}-d vectors but the index holds {expected_dim}-d ones: "
                "serve the model the index was built with, or rebuild the index"
            )

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: {max_batch_size, batch_wait_timeout_s}; applied live, without a restart."""
        if "max_batch_size" in config:
            self.encode.set_max_batch_size(int(config["max_batch_size"]))
        if "batch_wait_timeout_s" in config:
            self.encode.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    @serve.batch
    async def encode(self, texts: list[str]) -> list[np.ndarray]:
        # The forward pass runs in a thread so the replica's event loop keeps taking requests
        # (and filling the next batch) meanwhile.
        vectors = await asyncio.to_thread(self.encoder.encode_users, texts)  # (batch, dim)
        return list(vectors)

    async def encode_many(self, texts: list[str]) -> list[np.ndarray | BaseException]:
        """``encode`` for many texts in one Serve call: one vector (dim,) per text, or in its place the
        exception its forward pass raised (the Retriever passes that on to the text's request alone)."""
        return await asyncio.gather(*(self.encode(text) for text in texts), return_exceptions=True)

    async def encode_items(self, texts: list[str], item_ids: list[str] | None = None,
                           scenes: list[str] | None = None) -> np.ndarray:
        """The item tower for catalog edits: (len(texts), dim). Not batched: edits are rare next to queries.
        With ``item_ids`` (and ``scenes``), an item the model has an ID vector for (a warm item whose
        text was edited) keeps it; new items are encoded from their text alone."""
        return await asyncio.to_thread(self.encoder.encode_items, list(texts), 64, item_ids, scenes)

    def info(self) -> dict[str, Any]:
        import torch

        return {"model_version": self.encoder.version, "dim": self.encoder.dim, "device": str(self.encoder.device),
                "threads": torch.get_num_threads()}
