"""A GPU copy of a CPU FAISS index, used for search only.

The CPU index stays the source of truth (writes, vectors, saving). Additions are applied to
both; a removal marks the copy stale and the next search clones it again from the CPU index,
because GPU indexes cannot remove ids. A re-clone costs one host-to-device copy of the whole
index, so a catalog that deletes on every request is better served on the CPU.

``index_cpu_to_gpu`` clones ``IndexIDMap2`` by copying the id map on the host and cloning the
inner index to the GPU (faiss/gpu/GpuCloner.cpp); a bare IVF index keeps its own ids on the GPU,
and its nprobe is copied. GPU k-selection is limited (``GPU_MAX_K``): wider searches, such as a
filtered search widening past that, run on the CPU index.
"""

from __future__ import annotations

import faiss
import numpy as np

# FAISS GPU's k-selection supports k and nprobe up to 2048 (1024 in older builds): stay under both.
GPU_MAX_K = 1024


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_device(device: str) -> str:
    """``"cpu"``, ``"gpu"`` or ``"auto"`` -> ``"cpu"`` or ``"gpu"``; ``"gpu"`` without one is an error."""
    if device not in ("cpu", "gpu", "auto"):
        raise ValueError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    if device == "gpu" and not gpu_available():
        raise RuntimeError("device='gpu' but faiss sees no GPU (install faiss-gpu: pip install '.[gpu]')")
    return device


class GpuCopy:
    """The search-only GPU clone of ``cpu_index`` on GPU ``device``."""

    def __init__(self, cpu_index: faiss.Index, device: int = 0):
        self.device = device
        self.resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(self.resources, device, cpu_index)
        self.stale = False

    def refresh(self, cpu_index: faiss.Index) -> None:
        self.index = faiss.index_cpu_to_gpu(self.resources, self.device, cpu_index)
        self.stale = False

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Mirror an add (vectors (n, dim) float32, ids (n,) int64); a stale copy is re-cloned later anyway."""
        if not self.stale:
            self.index.add_with_ids(vectors, ids)

    def search(self, cpu_index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k); re-clones first when a removal made the copy stale."""
        if self.stale:
            self.refresh(cpu_index)
        return self.index.search(queries, k)
