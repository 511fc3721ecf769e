import torch

from coldrec.model.backbone import load_backbone
from coldrec.model.checkpoint import EncoderSettings, load_settings, save_checkpoint
from coldrec.model.encoder import TextEncoder
from coldrec.model.loss import InfoNCELoss
from coldrec.model.towers import TwoTowerModel, mean_pool


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 2.0]]))


def test_towers_share_backbone_and_normalise(tiny_backbone):
    tokenizer, backbone = load_backbone(tiny_backbone)
    model = TwoTowerModel(backbone)
    u = tokenizer(["a red pen", "office chair"], padding=True, return_tensors="pt")
    i = tokenizer(["pen", "chair"], padding=True, return_tensors="pt")
    user, item = model(u["input_ids"], u["attention_mask"], i["input_ids"], i["attention_mask"])
    assert user.shape == item.shape == (2, 32)
    assert torch.allclose(user.norm(dim=-1), torch.ones(2), atol=1e-5)
    # same text through either tower gives the same vector: one shared backbone
    same = model.item_tower(u["input_ids"], u["attention_mask"])
    assert torch.allclose(same, user)


def test_infonce_prefers_matching_pairs_and_masks_duplicates():
    loss = InfoNCELoss(temperature=0.1)
    emb = torch.nn.functional.normalize(torch.eye(4), dim=-1)
    good = loss(emb, emb)
    bad = loss(emb, emb.roll(1, dims=0))
    assert good < bad
    # rows 0 and 1 share an item: the duplicate is not a negative for either row
    items = emb.clone()
    items[1] = items[0]
    keys = torch.tensor([7, 7, 8, 9])
    users = items.clone()
    masked = loss(users, items, keys)
    unmasked = loss(users, items)
    assert masked < unmasked


def test_infonce_scores_extra_negatives_and_masks_the_users_own_item():
    import pytest

    loss = InfoNCELoss(temperature=0.1)
    torch.manual_seed(0)
    users, items, negatives = (torch.nn.functional.normalize(torch.randn(n, 8), dim=-1) for n in (3, 3, 6))
    keys, negative_keys = torch.tensor([1, 2, 3]), torch.arange(4, 10)
    plain = loss(users, items, keys)
    with_negatives = loss(users, items, keys, negatives, negative_keys)
    expected = torch.nn.functional.cross_entropy(users @ torch.cat([items, negatives]).T / 0.1, torch.arange(3))
    assert torch.allclose(with_negatives, expected) and with_negatives > plain
    # a mined "negative" that is the user's own positive item is masked, not pushed away
    one = (users[:1], items[:1], keys[:1])
    assert torch.allclose(loss(*one, items[:1].clone(), keys[:1].clone()), loss(*one))
    with pytest.raises(ValueError, match="keys"):
        loss(users, items, keys, negatives, None)


def test_towers_encode_negatives_in_the_same_forward(tiny_backbone):
    tokenizer, backbone = load_backbone(tiny_backbone)
    model = TwoTowerModel(backbone).eval()
    u, i, n = (tokenizer(t, padding=True, return_tensors="pt") for t in (["pen"], ["red pen"], ["lamp", "desk chair"]))
    user, item, negatives = model(u["input_ids"], u["attention_mask"], i["input_ids"], i["attention_mask"],
                                  n["input_ids"], n["attention_mask"])  # fmt: skip
    assert negatives.shape == (2, 32)
    assert torch.allclose(negatives, model.item_tower(n["input_ids"], n["attention_mask"]), atol=1e-6)


def test_infonce_rejects_bad_temperature():
    import pytest

    with pytest.raises(ValueError):
        InfoNCELoss(temperature=0)


def test_checkpoint_is_plain_hf_dir_and_loads_without_training_code(tiny_backbone, tmp_path):
    from transformers import AutoModel

    tokenizer, backbone = load_backbone(tiny_backbone)
    path = save_checkpoint(backbone, tokenizer, EncoderSettings(backbone=tiny_backbone, max_item_tokens=16), tmp_path / "ckpt")
    assert AutoModel.from_pretrained(path).config.hidden_size == 32
    settings = load_settings(path)
    assert settings.max_item_tokens == 16 and settings.version != "untrained"
    enc = TextEncoder.load(path, device="cpu")
    vecs = enc.encode_items(["stapler", "a long description " * 50])
    assert vecs.shape == (2, 32)
    assert abs(float((vecs**2).sum(axis=1)[0]) - 1.0) < 1e-4
