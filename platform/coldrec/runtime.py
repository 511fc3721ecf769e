"""Connecting to Ray the same way from the CLI, jobs and the demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Nothing may be fetched from a model hub at run time; tokenizers' own threads fight Ray's.
# Ray Data's Parquet reader starts 32 footer-reading actors for every read, whatever the file
# count: on a 2-core machine that is ~19 s per read, for processed folders of a few files. One
# actor reads 128 footers at a time, so two are plenty here; set the variable to raise it.
RUNTIME_ENV_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "2",
}


def runtime_env_vars() -> dict[str, str]:
    """``RUNTIME_ENV_VARS``, except that a variable already set in this process's environment keeps its value."""
    return {key: os.environ.get(key, value) for key, value in RUNTIME_ENV_VARS.items()}


def package_dir() -> str:
    return str(Path(__file__).resolve().parent)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once; ship the ``coldrec`` package to workers with ``py_modules``.

    Inside ``ray job submit`` (RAY_ADDRESS is set) this joins the cluster; on a laptop it
    starts a local Ray. The package travels as a py_module because ``platform/`` is not on
    the workers' path, exactly like Anyscale's templates ship their package.
    """
    import ray

    if ray.is_initialized():
        return
    env_vars = runtime_env_vars()
    os.environ.update(env_vars)  # a local Ray started here passes them to every process it starts
    runtime_env = {"py_modules": [package_dir()], "env_vars": env_vars}
    ray.init(address=address, num_cpus=num_cpus, runtime_env=runtime_env, log_to_driver=True)
    if not sys.stdout.isatty():
        # Progress bars redrawn into a log file or a job's output bury everything else.
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
