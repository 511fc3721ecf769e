"""Getting a dataset onto a machine, and finding where it lives.

``fetch_dataset("ml-100k")`` needs only PyPI: MovieLens 100K ships inside the recbole
wheel, so we ``pip download`` that wheel (never install it) and unzip three files,
checking each against the SHA-256 recorded here. The Amazon sets have no such source;
point ``data.path`` at them.

    python -c "from coldrec.data.fetch import fetch_dataset; print(fetch_dataset())"
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from coldrec.config import DataConfig
from coldrec.data.readers.files import DataError

RECBOLE_WHEEL = "recbole==1.2.1"
WHEEL_FOLDER = "recbole/dataset_example/ml-100k"
# Taken from ../shared/datasets/ml-100k and confirmed equal to the files in the recbole 1.2.1 wheel.
CHECKSUMS = {
    "ml-100k": {
        "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    }
}


def coldrec_home() -> Path:
    return Path(os.environ.get("COLDREC_HOME", "~/.cache/coldrec")).expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(folder: Path, expected: dict[str, str]) -> None:
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        got = sha256(path)
        if got != want:
            raise DataError(f"{path}: checksum mismatch (sha256 {got}, expected {want}); the file is not the known one")


def _is_verified(folder: Path, expected: dict[str, str]) -> bool:
    try:
        _verify(folder, expected)
        return True
    except DataError:
        return False


def _download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", RECBOLE_WHEEL, "-d", str(into), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("recbole-*.whl"))
    if done.returncode != 0 or not wheels:
        raise DataError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return wheels[0]


def fetch_dataset(name: str = "ml-100k", dest: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Put ``name``'s files into ``dest`` (default ``$COLDREC_HOME/datasets/<name>``) and return it.

    ``source``: a local folder to copy from instead of PyPI. Files already there and matching
    their checksums are left alone; any mismatch raises :class:`DataError`.
    """
    if name not in CHECKSUMS:
        raise DataError(f"no fetch source for dataset {name!r}; known: {sorted(CHECKSUMS)} (set data.path instead)")
    expected = CHECKSUMS[name]
    dest = Path(dest).expanduser() if dest is not None else coldrec_home() / "datasets" / name
    if _is_verified(dest, expected):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coldrec-fetch-") as tmp:
        staged = Path(tmp) / "files"
        staged.mkdir()
        if source is not None:
            for file in expected:
                if not (Path(source) / file).is_file():
                    raise DataError(f"{Path(source) / file}: file not found")
                shutil.copyfile(Path(source) / file, staged / file)
        else:
            with zipfile.ZipFile(_download_wheel(Path(tmp))) as wheel:
                for file in expected:
                    (staged / file).write_bytes(wheel.read(f"{WHEEL_FOLDER}/{file}"))
        _verify(staged, expected)  # check before anything lands in dest
        for file in expected:
            shutil.move(str(staged / file), dest / file)
    return dest


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding pyproject.toml."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def resolve_source_dir(cfg: DataConfig) -> Path:
    """Where ``cfg.dataset``'s files are: data.path, ../shared/datasets/<name>, or the fetch cache."""
    if cfg.path is not None:
        path = Path(cfg.path).expanduser().resolve()
        if not path.exists():
            raise DataError(f"{cfg.dataset}: data.path {path} does not exist")
        return path
    if cfg.dataset == "generic":
        return Path.cwd()  # the generic file paths are relative to the working directory
    roots = {project_root(Path.cwd().resolve()), project_root(Path(__file__).resolve().parent)}
    for root in (r for r in roots if r is not None):
        shared = root.parent / "shared" / "datasets" / cfg.dataset
        if shared.is_dir():
            return shared
    cached = coldrec_home() / "datasets" / cfg.dataset
    if cached.is_dir():
        return cached
    hint = "run `coldrec data fetch ml-100k`" if cfg.dataset in CHECKSUMS else "set data.path to its folder"
    raise DataError(f"dataset {cfg.dataset!r} not found (no data.path, no ../shared/datasets, no {cached}); {hint}")
