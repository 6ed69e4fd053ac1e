"""The first-name table is derived once and kept in the cache folder."""

from __future__ import annotations

import polars as pl

from biasamp.corpus import names
from biasamp.store import cache_dir


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BIASAMP_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.setenv("BIASAMP_CACHE_DIR", "off")
    assert cache_dir() is None
    monkeypatch.delenv("BIASAMP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "biasamp"


def test_first_names_cached_equal_derived(tmp_path, monkeypatch):
    monkeypatch.setenv("BIASAMP_CACHE_DIR", str(tmp_path))
    names.first_name_genders.cache_clear()
    try:
        first = names.first_name_genders()
        files = list(tmp_path.glob("first-names-*.parquet"))
        assert len(files) == 1
        assert first == names._derive_first_names() and first["Maria"] == "female" and first["John"] == "male"
        # read back from the cache, not derived again
        names.first_name_genders.cache_clear()
        monkeypatch.setattr(names, "_derive_first_names", lambda: {"Nobody": "male"})
        assert names.first_name_genders() == first
        # a damaged cache file is rebuilt
        files[0].write_bytes(b"not parquet")
        names.first_name_genders.cache_clear()
        assert names.first_name_genders() == {"Nobody": "male"}
        assert pl.read_parquet(files[0]).height == 1
        # an empty table is never cached
        files[0].unlink()
        names.first_name_genders.cache_clear()
        monkeypatch.setattr(names, "_derive_first_names", lambda: {})
        assert names.first_name_genders() == {} and not list(tmp_path.glob("*.parquet"))
        monkeypatch.setattr(names, "_derive_first_names", lambda: {"Nobody": "male"})
        names.first_name_genders.cache_clear()
        assert names.first_name_genders() == {"Nobody": "male"}
        # caching off: derived every time, nothing written
        monkeypatch.setenv("BIASAMP_CACHE_DIR", "off")
        files[0].unlink()
        names.first_name_genders.cache_clear()
        assert names.first_name_genders() == {"Nobody": "male"} and not list(tmp_path.glob("*.parquet"))
    finally:
        names.first_name_genders.cache_clear()
