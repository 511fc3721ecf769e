"""Preprocess -> train -> (index) -> evaluate in one call: what benchmarks and the GPU runs use."""

from __future__ import annotations

import time

from coldrec.config import PipelineConfig


def run_pipeline(cfg: PipelineConfig, build_index_too: bool = False, skip_preprocess: bool = False) -> dict:
    from coldrec.data.preprocess import preprocess
    from coldrec.eval.evaluate import evaluate
    from coldrec.runtime import init_ray
    from coldrec.train.trainer import train

    init_ray()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if not skip_preprocess:
        preprocess(cfg.data, scene_prefix=cfg.model.scene_prefix, text=cfg.model.text)
    timings["preprocess_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    trained = train(cfg)
    timings["train_s"] = round(time.perf_counter() - start, 1)
    index_dir = None
    if build_index_too:
        from coldrec.index.build import build_index

        index_dir = str(build_index(cfg, model_path=str(trained.best_model_dir)))
    start = time.perf_counter()
    report = evaluate(cfg, model_path=str(trained.best_model_dir))
    timings["evaluate_s"] = round(time.perf_counter() - start, 1)
    return {"report": report, "train": trained, "timings": timings, "index_dir": index_dir}
