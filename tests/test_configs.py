"""Every committed config still loads: a renamed or removed field fails here, not in a benchmark an hour in."""

from pathlib import Path

import pytest
import yaml

from coldrec.config import load_config
from coldrec.eval.table import load_table_config, run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_committed_config_loads(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # table configs name their runs' configs from the project root
    if "runs" in (yaml.safe_load(path.read_text()) or {}):  # a quality table: each run's config with its overrides
        table = load_table_config(path)
        assert table.runs
        for run in table.runs:
            run_config(run, table.overrides)
    else:
        load_config(path)


def test_there_are_configs():
    assert len(CONFIGS) > 10
