"""The environment coldrec's entry points give Ray: its defaults, and the caller's own settings kept."""

from __future__ import annotations

from coldrec.runtime import RUNTIME_ENV_VARS, runtime_env_vars


def test_runtime_env_vars_keep_what_the_caller_set(monkeypatch):
    monkeypatch.setenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "16")
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    env = runtime_env_vars()
    assert env.keys() == RUNTIME_ENV_VARS.keys()
    assert env["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] == "16"  # the caller's, not the default 2
    assert env["TOKENIZERS_PARALLELISM"] == "false"  # unset: the default
