"""Text templates and history order (model.text): rendering, validation, and the tokenizers
and checks that keep training, evaluation and serving on the same texts."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import get_args

import pytest
from pydantic import ValidationError

from coldrec.config import ItemField, ModelConfig, TextConfig, load_config
from coldrec.data.processed import check_text, processed_text
from coldrec.data.schema import ITEM_TEXT_FIELDS
from coldrec.text import render_item_text, render_profile_text, strip_scene_prefix

ITEM = {"item_id": "i1", "scene": "shop", "title": "Quiet Keyboard.", "categories": "Office > Keyboards",
        "brand": "Acme", "description": "A keyboard with silent switches for shared offices", "year": None}


def test_default_template_is_every_field_in_schema_order():
    assert tuple(get_args(ItemField)) == ITEM_TEXT_FIELDS
    assert TextConfig().fields == list(ITEM_TEXT_FIELDS)
    assert render_item_text(ITEM) == (
        "Quiet Keyboard. Office > Keyboards. Acme. A keyboard with silent switches for shared offices")
    assert render_item_text(ITEM, scene_prefix=True).startswith("shop: Quiet Keyboard. ")


def test_template_picks_orders_labels_and_cuts_fields():
    text = TextConfig(fields=["brand", "title", "description"], labels=True, max_chars={"description": 20})
    # The description is cut at the last word boundary within 20 characters.
    assert render_item_text(ITEM, text=text) == "brand: Acme. title: Quiet Keyboard. description: A keyboard with"
    assert render_item_text({"title": "Unbroken" * 5}, text=TextConfig(max_chars={"title": 6})) == "Unbrok"
    assert render_item_text({"title": "T", "brand": None}, text=TextConfig(fields=["brand"])) == ""


def test_a_scene_template_replaces_the_default_for_that_scene_only():
    text = TextConfig(scenes={"movies": {"fields": ["title", "genres", "year"]}})
    movie = {"scene": "movies", "title": "Heat", "genres": "Crime", "year": "1995", "description": "long"}
    assert render_item_text(movie, text=text) == "Heat. Crime. 1995"
    assert render_item_text(movie, scene_prefix=True, text=text) == "movies: Heat. Crime. 1995"
    assert render_item_text(ITEM, text=text) == render_item_text(ITEM)  # shop: the default template


@pytest.mark.parametrize("bad", [{"fields": ["title", "title"]}, {"fields": []}, {"fields": ["price"]},
                                 {"max_chars": {"title": 0}}, {"history_order": "random"},
                                 {"scenes": {"movies": {"history_order": "oldest-first"}}}])
def test_invalid_templates_are_refused(bad):
    with pytest.raises(ValidationError):
        TextConfig.model_validate(bad)


def test_config_files_and_overrides_reach_model_text(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  text:\n    fields: [title, brand]\n    scenes:\n      movies: {fields: [title]}\n")
    cfg = load_config(str(path), ["model.text.history_order=oldest-first", "model.text.labels=true"])
    assert cfg.model.text.fields == ["title", "brand"] and cfg.model.text.labels
    assert cfg.model.text.history_order == "oldest-first"
    assert cfg.model.text.template("movies").fields == ["title"]


def test_profile_orders():
    newest_first = ["c", "", "b", "a"]  # empty texts count towards max_items, as before
    assert render_profile_text(newest_first, "hi", 3, "shop") == "shop: hi | c | b"
    assert render_profile_text(newest_first, "hi", 3, "shop", order="oldest-first") == "b | c | hi | shop"
    assert render_profile_text(newest_first, None, 10, None, order="oldest-first") == "a | b | c"
    assert render_profile_text([], "  just   words ", order="oldest-first") == "just words"
    assert render_profile_text([], None, scene="shop", order="oldest-first") == "shop"


def test_strip_scene_prefix_undoes_render_item_text():
    prefixed = render_item_text(ITEM, scene_prefix=True)
    assert strip_scene_prefix(prefixed, "shop") == render_item_text(ITEM)
    assert strip_scene_prefix("Acme: a brand-led title", "shop") == "Acme: a brand-led title"
    assert strip_scene_prefix(prefixed, None) == prefixed


def test_ingress_profiles_join_unprefixed_item_texts():
    """Training's profile puts the scene once, in front (preprocess joins plain item texts); the
    Ingress reads the index's prefixed texts and must strip them to feed the user tower the same."""
    from coldrec.serve.ingress import Ingress

    cls = Ingress.func_or_class
    for order in ("newest-first", "oldest-first"):
        ingress = SimpleNamespace(scene_prefix=True, text=TextConfig(history_order=order), profile_items=10,
                                  default_scene="shop")
        ingress._plain_text = lambda row, ingress=ingress: cls._plain_text(ingress, row)
        rows = [ITEM, {**ITEM, "title": "Mouse"}]
        known = {f"i{n}": {"text": render_item_text(r, scene_prefix=True), "scene": "shop"} for n, r in enumerate(rows)}
        request = SimpleNamespace(scene=None, text="for the office")
        trained = render_profile_text([render_item_text(r) for r in rows], "for the office", 10, "shop", order=order)
        assert cls._profile_text(ingress, request, ["i0", "i1"], known) == trained
        assert trained.count("shop") == 1


def test_profile_tokenizer_cuts_oldest_first_profiles_from_the_left(tiny_backbone):
    from coldrec.model.backbone import load_backbone
    from coldrec.model.encoder import profile_tokenizer

    tokenizer, _ = load_backbone(tiny_backbone)
    assert profile_tokenizer(tokenizer, "newest-first") is tokenizer
    left = profile_tokenizer(tokenizer, "oldest-first")
    text = "oldest keyboard | older mouse | newest monitor"
    kept = left.decode(left(text, truncation=True, max_length=4)["input_ids"], skip_special_tokens=True)
    assert kept == "newest monitor"
    # The original still cuts on the right, for item texts: titles come first.
    assert tokenizer.decode(tokenizer(text, truncation=True, max_length=4)["input_ids"],
                            skip_special_tokens=True) == "oldest keyboard"


def test_text_encoder_truncates_only_profiles_from_the_left(tiny_backbone):
    from coldrec.model.encoder import TextEncoder

    model = ModelConfig(max_user_tokens=6, max_item_tokens=6, text={"history_order": "oldest-first"})
    encoder = TextEncoder.load(tiny_backbone, device="cpu", model_config=model)
    long, short = "alpha beta gamma delta | keyboard mouse", "delta | keyboard mouse"
    users = encoder.encode_users([long, short])
    assert users[0] == pytest.approx(users[1], abs=1e-5)  # only the end survived, in both
    items = encoder.encode_items(["keyboard mouse alpha beta gamma delta", "keyboard mouse alpha beta"])
    assert items[0] == pytest.approx(items[1], abs=1e-5)  # items keep their start


def test_processed_folders_record_their_text_and_refuse_another(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"scene_prefix": False}))
    assert processed_text(tmp_path) == TextConfig()  # folders from before model.text
    check_text(tmp_path, TextConfig())
    with pytest.raises(ValueError, match="fields, labels differ"):
        check_text(tmp_path, TextConfig(fields=["title"], labels=True))
    made = TextConfig(history_order="oldest-first")
    (tmp_path / "stats.json").write_text(json.dumps({"text": made.model_dump()}))
    check_text(tmp_path, made)


def test_training_refuses_a_folder_rendered_with_another_template(tmp_path):
    from coldrec.train.trainer import check_inputs

    (tmp_path / "stats.json").write_text(json.dumps({"text": TextConfig(labels=True).model_dump()}))
    with pytest.raises(ValueError, match="coldrec preprocess"):
        check_inputs(tmp_path, text=TextConfig())


def test_ingress_refuses_an_item_with_none_of_its_templates_fields():
    import asyncio

    from fastapi import HTTPException

    from coldrec.serve.ingress import Ingress
    from coldrec.serve.state_schemas import ItemFields

    ingress = SimpleNamespace(scene_prefix=False, default_scene="movies",
                              text=TextConfig(scenes={"movies": {"fields": ["title", "year"]}}))
    with pytest.raises(HTTPException) as caught:  # before anything is encoded or stored
        asyncio.run(Ingress.func_or_class._put_item(ingress, "new", ItemFields(description="only words")))
    assert caught.value.status_code == 422 and "['title', 'year']" in str(caught.value.detail)


def test_training_batches_cut_oldest_first_profiles_from_the_left(tiny_backbone):
    import numpy as np

    from coldrec.model.backbone import load_backbone
    from coldrec.model.encoder import profile_tokenizer
    from coldrec.train.batching import TokenizingCollate

    tokenizer, _ = load_backbone(tiny_backbone)
    collate = TokenizingCollate(tokenizer, 4, 4, profile_tokenizer(tokenizer, "oldest-first"))
    text = "oldest keyboard | older mouse | newest monitor"
    out = collate({"profile_text": np.array([text]), "target_text": np.array([text]), "target": np.array(["i1"])})
    assert tokenizer.decode(out["user_input_ids"][0], skip_special_tokens=True) == "newest monitor"
    assert tokenizer.decode(out["item_input_ids"][0], skip_special_tokens=True) == "oldest keyboard"


def test_a_folder_without_stats_has_nothing_to_check(tmp_path):
    check_text(tmp_path, TextConfig(labels=True))  # not written by coldrec preprocess: no error
