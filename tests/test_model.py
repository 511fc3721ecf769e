import numpy as np
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


# ---------------------------------------------------------------- ID embedding for warm items


def test_id_vocab_keeps_items_seen_often_enough_and_matches_training_keys():
    from coldrec.model.id_embedding import IdVocab
    from coldrec.train.batching import item_keys

    vocab = IdVocab.from_targets(["b", "a", "b", "c", "b", "a"], None, min_count=2)
    assert vocab.keys == ["a", "b"] and len(vocab) == 2  # "c" was seen once: cold
    assert vocab.rows(["b", "c", "a", "new"]).tolist() == [2, 0, 1, 0]
    assert vocab.rows_for_hashes(item_keys(["a", "c", "b"])).tolist() == [1, 0, 2]

    scened = IdVocab.from_targets(["x", "x"], ["shop", "news"], min_count=1)
    assert scened.rows(["x", "x", "x"], ["news", "shop", "books"]).tolist() == [1, 2, 0]
    assert scened.rows(["x"]).tolist() == [0]  # a per-scene vocabulary needs the scene
    assert scened.rows_for_hashes(item_keys(["x"], ["shop"])).tolist() == [2]


def test_id_vectors_start_at_zero_fuse_when_set_and_drop_out_in_training(tiny_backbone):
    tokenizer, backbone = load_backbone(tiny_backbone)
    model = TwoTowerModel(backbone, num_ids=3, id_dropout=1.0).eval()
    i = tokenizer(["red pen", "blue lamp", "green chair"], padding=True, return_tensors="pt")
    rows = torch.tensor([1, 0, 3])
    text = model.item_tower(i["input_ids"], i["attention_mask"])
    assert torch.allclose(model.item_tower(i["input_ids"], i["attention_mask"], rows), text)  # zero init

    with torch.no_grad():
        model.id_embedding.weight[1:] = torch.randn(3, 32)
    fused = model.item_tower(i["input_ids"], i["attention_mask"], rows)
    expected = torch.nn.functional.normalize(text[0] + model.id_embedding.weight[1], dim=0)
    assert torch.allclose(fused[0], expected, atol=1e-6)
    assert torch.allclose(fused[1], text[1])  # row 0: no ID, text alone
    assert not torch.allclose(fused[2], text[2], atol=1e-3)
    assert torch.allclose(fused.norm(dim=-1), torch.ones(3), atol=1e-5)
    # Training with dropout 1.0 drops every ID: the text path alone (dropout is off in eval mode).
    assert torch.allclose(model.train().add_ids(text, rows), text)


def test_text_encoder_fuses_saved_id_vectors_for_warm_items_only(tiny_backbone, tmp_path):
    from coldrec.config import ModelConfig
    from coldrec.model.id_embedding import ID_TABLE_FILE, IdVocab, save_id_table

    tokenizer, backbone = load_backbone(tiny_backbone)
    vocab = IdVocab(["i1", "i2"], with_scene=False)
    weight = torch.cat([torch.zeros(1, 32), torch.randn(2, 32)])
    save_checkpoint(backbone, tokenizer, EncoderSettings.from_configs(ModelConfig(backbone=tiny_backbone)), tmp_path)
    save_id_table(tmp_path, vocab, weight)
    assert (tmp_path / ID_TABLE_FILE).is_file()

    encoder = TextEncoder.load(tmp_path, device="cpu")
    texts = ["red pen", "blue lamp", "green chair"]
    text_only = encoder.encode_items(texts)
    with_ids = encoder.encode_items(texts, item_ids=["i2", "cold", "i1"])
    model = TwoTowerModel(backbone, num_ids=2).eval()
    model.id_embedding.weight.data.copy_(weight)
    expected = model.add_ids(torch.from_numpy(text_only), torch.tensor([2, 0, 1])).detach().numpy()
    assert np.allclose(with_ids, expected, atol=1e-5)
    assert np.allclose(with_ids[1], text_only[1])  # a cold item: its text vector, unchanged
    assert not np.allclose(with_ids[0], text_only[0], atol=1e-3)
