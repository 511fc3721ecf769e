"""GPU code paths (deselected by default; run with ``-m gpu`` on a CUDA machine)."""

import pytest
import torch

from coldrec.model.backbone import load_backbone
from coldrec.model.encoder import TextEncoder
from coldrec.model.loss import InfoNCELoss
from coldrec.model.towers import TwoTowerModel

pytestmark = pytest.mark.gpu


def test_bf16_training_step_on_cuda(tiny_backbone):
    tokenizer, backbone = load_backbone(tiny_backbone)
    model = TwoTowerModel(backbone).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    u = tokenizer(["red pen", "office chair", "paper"], padding=True, return_tensors="pt").to("cuda")
    i = tokenizer(["pen", "chair", "ream"], padding=True, return_tensors="pt").to("cuda")
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            user, item = model(u["input_ids"], u["attention_mask"], i["input_ids"], i["attention_mask"])
        loss = InfoNCELoss(0.1)(user, item)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_encoder_runs_bf16_on_cuda(tiny_backbone):
    enc = TextEncoder.load(tiny_backbone, device="cuda")
    vecs = enc.encode_items(["stapler", "telescope"])
    assert vecs.shape == (2, 32) and abs(float((vecs[0] ** 2).sum()) - 1.0) < 1e-2


def test_faiss_gpu_search_matches_cpu():
    import faiss
    import numpy as np

    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss was installed without GPU support (pip install '.[gpu]')")
    xb = np.random.default_rng(0).standard_normal((1000, 32)).astype("float32")
    cpu = faiss.IndexFlatIP(32)
    cpu.add(xb)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
    assert (gpu.search(xb[:5], 3)[1] == cpu.search(xb[:5], 3)[1]).all()
