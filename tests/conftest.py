"""Shared fixtures: one local Ray per test session, a tiny backbone, the real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldrec.runtime import runtime_env_vars

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"

# The settings coldrec's own entry points give Ray; the session's local Ray inherits them.
os.environ.update(runtime_env_vars())
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (a cluster start costs seconds on 2 cores)."""
    import ray

    if not ray.is_initialized():
        # Serve kills an HTTP proxy that is not ready within 5 s, and starting one takes longer on
        # 2 busy cores; the processes Ray starts inherit this environment.
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
        # More logical CPUs than cores: Serve's controller, proxy and replicas, Ray Data
        # and Ray Train actors must all fit at once; they mostly wait on each other.
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT built from a config: the model for plumbing tests."""
    from coldrec.model.backbone import save_tiny_backbone

    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def minilm_encoder():
    """The packaged all-MiniLM-L6-v2, loaded once per session."""
    from coldrec.model.encoder import TextEncoder

    return TextEncoder.load("minilm", device="cpu")
