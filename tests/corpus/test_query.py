"""The whole query: outputs, resume, bad input, statistics and the CLI."""

from __future__ import annotations

import json

import polars as pl
import pytest

import biasamp.corpus.query as query_mod
from biasamp import tables
from biasamp.corpus import corpus_stats, make_corpus, query_corpus, read_mentions
from biasamp.errors import BiasampError


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    make_corpus(30_000, seed=5, out=d, rows_per_file=10_000, occupation_rate=0.1)
    return d


def test_outputs_and_layout(corpus_dir, tmp_path):
    res = query_corpus(str(corpus_dir), tmp_path / "q", progress=False, workers=2)
    out = tmp_path / "q"
    assert (out / "query.manifest.json").exists() and (out / "stats.parquet").exists() and (out / "files.parquet").exists()
    parts = sorted(p.relative_to(out / "mentions").parts[0] for p in (out / "mentions").rglob("*.parquet"))
    assert all(p.startswith("occupation=") for p in parts)
    assert "occupation=tv-presenter" in parts
    # the mentions table reads back through the shared reader, and validates
    via_tables = tables.read_table(out / "mentions", "mentions")
    mine = read_mentions(out)
    assert via_tables.height == mine.height == res.files["mention_rows"].sum()
    assert mine.schema["caption_id"] == pl.Int64 and mine.schema["indicator_terms"] == pl.List(pl.Utf8)
    assert set(mine["indicator"].unique()) <= {"male", "female", "both", "none"}
    # one row per (caption, occupation)
    assert mine.select("source", "row", "occupation").n_unique() == mine.height
    assert read_mentions(out, occupations=["nurse"])["occupation"].unique().to_list() == ["nurse"]
    assert res.files["rows"].sum() == 30_000 and res.files["status"].to_list() == ["ok"] * 3


def test_stats_against_a_reference(corpus_dir, tmp_path):
    res = query_corpus(str(corpus_dir), tmp_path / "q", progress=False, names=None)
    m = res.mentions()
    for occ in ("nurse", "engineer"):
        sub = m.filter(pl.col("occupation") == occ)
        row = res.stats.filter(pl.col("occupation") == occ).row(0, named=True)
        counts = {k: int((sub["indicator"] == k).sum()) for k in ("male", "female", "both", "none")}
        assert row["captions"] == sub.height and all(row[k] == v for k, v in counts.items())
        assert row["indicator_rate"] == pytest.approx((sub.height - counts["none"]) / sub.height)
        assert row["male_share"] == pytest.approx(counts["male"] / (counts["male"] + counts["female"]))
        assert row["per_million"] == pytest.approx(sub.height * 1e6 / 30_000)
    s = corpus_stats(tmp_path / "q")
    assert s.occupations.equals(res.stats) and s.totals["captions_scanned"] == 30_000


def test_compacted_layout_and_batches(corpus_dir, tmp_path, monkeypatch):
    """Mentions of all input files end up in one file per occupation and batch."""
    ref = query_corpus(str(corpus_dir), tmp_path / "s", progress=False, partition="shard", names=None).mentions()
    res = query_corpus(str(corpus_dir), tmp_path / "q", progress=False, names=None, workers=2)
    out = tmp_path / "q"
    records = [json.loads(p.read_text()) for p in (out / "_compacted").glob("*.json")]
    assert len(records) == 1 and len(records[0]["shards"]) == 3 and records[0]["rows"] == ref.height
    batch = next((out / "_compacted").glob("*.json")).stem
    files = list((out / "mentions").rglob("*.parquet"))
    assert files and all(f.name == f"part-{batch}.parquet" for f in files)
    assert len(files) == ref["occupation"].n_unique()
    assert not list((out / "mentions" / query_mod.STAGED).glob("*"))  # nothing left staged
    key = ["source", "row", "occupation"]
    assert res.mentions().sort(key).equals(ref.sort(key))
    # small batches: several batches, the same rows
    small = query_mod.Compactor
    monkeypatch.setattr(query_mod, "Compactor", lambda out, **kw: small(out, **{**kw, "batch_rows": 700}))
    res2 = query_corpus(str(corpus_dir), tmp_path / "q2", progress=False, names=None, workers=1)
    assert len(list((tmp_path / "q2" / "_compacted").glob("*.json"))) >= 2
    assert res2.mentions().sort(key).equals(ref.sort(key))
    assert res2.stats.equals(res.stats)


def test_interrupted_compaction_is_redone(corpus_dir, tmp_path, monkeypatch):
    ref = query_corpus(str(corpus_dir), tmp_path / "ref", progress=False, names=None).mentions()
    key = ["source", "row", "occupation"]
    real_write = query_mod.Compactor._write_batch

    def dying_write(self, items):  # killed after some occupation files, before the batch record
        parts = items[0][1]
        occ = sorted(parts)[0]
        query_mod.atomic_write_parquet(parts[occ], self.mdir / f"occupation={occ}" / "part-bdeadbeefdeadbeef.parquet")
        raise KeyboardInterrupt

    monkeypatch.setattr(query_mod.Compactor, "_write_batch", dying_write)
    with pytest.raises(KeyboardInterrupt):
        query_corpus(str(corpus_dir), tmp_path / "k", progress=False, names=None)
    out = tmp_path / "k"
    # every input file is committed (staged); the unrecorded batch file is not read
    assert len(list((out / "_progress").glob("*.json"))) == 3
    assert len(list((out / "mentions" / query_mod.STAGED).glob("*.arrow"))) == 3
    assert read_mentions(out).sort(key).equals(ref.sort(key))
    assert corpus_stats(out).totals["mention_rows"] == ref.height
    # the selection stage reads a query output the same way (not every Parquet file in it)
    from biasamp.select.core import _load_mentions

    assert _load_mentions(out).height == _load_mentions(out / "mentions").height == ref.height
    # killed after the batch record, before the staged files were deleted: still read once
    monkeypatch.setattr(query_mod.Compactor, "_write_batch", real_write)
    real_unlink = query_mod.Path.unlink

    def no_unlink(self, missing_ok=False):
        if self.suffix == ".arrow":
            raise KeyboardInterrupt
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(query_mod.Path, "unlink", no_unlink)
    with pytest.raises(KeyboardInterrupt):
        query_corpus(str(corpus_dir), tmp_path / "k", progress=False, names=None)
    monkeypatch.setattr(query_mod.Path, "unlink", real_unlink)
    assert len(list((out / "_compacted").glob("*.json"))) == 1
    assert len(list((out / "mentions" / query_mod.STAGED).glob("*.arrow"))) == 3
    assert read_mentions(out).sort(key).equals(ref.sort(key))
    # the next run tidies up: no leftovers, no duplicates, nothing re-read from the corpus
    done = []
    real_process = query_mod.process_file
    monkeypatch.setattr(query_mod, "process_file", lambda cf, *a, **k: done.append(cf.path) or real_process(cf, *a, **k))
    res = query_corpus(str(corpus_dir), tmp_path / "k", progress=False, names=None)
    assert done == []
    assert not list((out / "mentions" / query_mod.STAGED).glob("*.arrow"))
    assert not list((out / "mentions").rglob("part-bdeadbeefdeadbeef.parquet"))
    assert res.mentions().sort(key).equals(ref.sort(key))
    assert tables.read_table(out / "mentions", "mentions").height == ref.height


def test_shard_partition(corpus_dir, tmp_path):
    res = query_corpus(str(corpus_dir), tmp_path / "s", progress=False, partition="shard", names=None)
    files = sorted(p.name for p in (tmp_path / "s" / "mentions").glob("*.parquet"))
    assert len(files) == 3 and all(f.startswith("part-part-0000") for f in files)
    assert tables.read_table(tmp_path / "s" / "mentions", "mentions").height == res.mentions().height


def test_resume_after_a_kill(corpus_dir, tmp_path, monkeypatch):
    fresh = query_corpus(str(corpus_dir), tmp_path / "fresh", progress=False, names=None, workers=1).mentions()
    real = query_mod._commit
    calls = {"n": 0}

    def dying_commit(out, shard, mentions, info, partition):
        calls["n"] += 1
        if calls["n"] == 2:  # killed half way through the second file's parts
            if mentions.height:
                first = mentions.partition_by("occupation")[0]
                query_mod.atomic_write_parquet(first, out / "mentions" / f"occupation=x/part-{shard}.parquet")
            raise KeyboardInterrupt
        return real(out, shard, mentions, info, partition)

    monkeypatch.setattr(query_mod, "_commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        query_corpus(str(corpus_dir), tmp_path / "r", progress=False, names=None, workers=1)
    assert len(list((tmp_path / "r" / "_progress").glob("*.json"))) == 1
    # the half-written file is not read as committed output
    assert read_mentions(tmp_path / "r").height < fresh.height
    monkeypatch.setattr(query_mod, "_commit", real)
    done = []
    real_process = query_mod.process_file
    monkeypatch.setattr(query_mod, "process_file", lambda cf, *a, **k: done.append(cf.path) or real_process(cf, *a, **k))
    resumed = query_corpus(str(corpus_dir), tmp_path / "r", progress=False, names=None, workers=1)
    assert len(done) == 2  # the committed file is not redone
    assert not list((tmp_path / "r" / "mentions").glob("occupation=x/*"))  # leftovers removed
    key = ["source", "row", "occupation"]
    assert resumed.mentions().sort(key).equals(fresh.sort(key))


def test_other_settings_refused_then_overwritten(corpus_dir, tmp_path):
    query_corpus(str(corpus_dir), tmp_path / "o", progress=False, names=None)
    with pytest.raises(BiasampError, match="other settings"):
        query_corpus(str(corpus_dir), tmp_path / "o", progress=False, names=None, lexicon="extended")
    res = query_corpus(str(corpus_dir), tmp_path / "o", progress=False, names=None, lexicon="extended", overwrite=True)
    assert json.loads((tmp_path / "o" / "query.manifest.json").read_text())["params"]["lexicon"] == "extended"
    assert res.mentions().height == res.files["mention_rows"].sum()


# -- bad input -----------------------------------------------------------------------------
def test_missing_text_column_lists_columns(tmp_path):
    pl.DataFrame({"URL": ["u"], "WIDTH": [1]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(BiasampError) as e:
        query_corpus(str(tmp_path / "x.parquet"), tmp_path / "o", progress=False, names=None)
    msg = str(e.value)
    assert "x.parquet" in msg and "no text column" in msg and "columns found: URL, WIDTH" in msg


def test_nulls_empty_and_very_long(tmp_path):
    long = ("word " * 400_000) + "a nurse and her dog"
    texts = [None, "", "   ", long, "nurse", None]
    pl.DataFrame({"TEXT": texts, "URL": [f"u{i}" for i in range(6)]}).write_parquet(tmp_path / "n.parquet")
    res = query_corpus(str(tmp_path / "n.parquet"), tmp_path / "o", progress=False, names=None)
    f = res.files.row(0, named=True)
    assert (f["rows"], f["null_text"], f["empty_text"]) == (6, 2, 1)
    m = res.mentions().sort("row")
    assert m["row"].to_list() == [3, 4] and m["indicator"].to_list() == ["female", "none"]
    assert len(m["text"][0]) == len(long)  # kept whole


def test_non_utf8_bytes(tmp_path):
    bad = "A nurse caf\xe9 with her dog".encode("latin-1")
    (tmp_path / "a.tsv").write_bytes(b"caption\turl\n" + bad + b"\thttps://x/1.jpg\n")
    (tmp_path / "b.jsonl").write_bytes(b'{"caption": "' + bad + b'", "url": "https://x/2.jpg"}\n')
    pl.DataFrame({"TEXT": pl.Series([bad, b"an engineer"], dtype=pl.Binary), "URL": ["u1", "u2"]}).write_parquet(tmp_path / "c.parquet")
    res = query_corpus(str(tmp_path), tmp_path / "o", progress=False, names=None)
    m = res.mentions().sort("source")
    assert m.height == 4
    assert m.filter(pl.col("occupation") == "nurse")["text"].to_list() == ["A nurse caf\ufffd with her dog"] * 3
    assert m.filter(pl.col("occupation") == "nurse")["indicator"].to_list() == ["female"] * 3
    assert res.files["non_utf8"].sum() >= 3


def _corrupt(tmp_path):
    good = tmp_path / "c" / "good.parquet"
    good.parent.mkdir()
    pl.DataFrame({"TEXT": ["a nurse"] * 100, "URL": ["u"] * 100}).write_parquet(good)
    data = good.read_bytes()
    (tmp_path / "c" / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "c" / "garbage.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    return tmp_path / "c"


def test_corrupt_parquet_names_the_file(tmp_path):
    d = _corrupt(tmp_path)
    with pytest.raises(BiasampError, match=r"cannot read corpus file .*garbage\.parquet") as e:
        query_corpus(str(d), tmp_path / "o", progress=False, names=None, workers=1)
    assert "--skip-bad-files" in str(e.value)


def test_skip_bad_files_records_them(tmp_path):
    d = _corrupt(tmp_path)
    res = query_corpus(str(d), tmp_path / "o", progress=False, names=None, skip_bad_files=True)
    status = dict(zip([s.rsplit("/", 1)[1] for s in res.files["source"]], res.files["status"]))
    assert status == {"garbage.parquet": "skipped", "good.parquet": "ok", "truncated.parquet": "skipped"}
    assert all("cannot read corpus file" in e for e in res.files.filter(pl.col("status") == "skipped")["error"])
    assert res.mentions().height == 100
    assert corpus_stats(tmp_path / "o").totals["files_skipped"] == 2


def test_empty_corpus(tmp_path):
    pl.DataFrame({"TEXT": pl.Series([], dtype=pl.Utf8), "URL": pl.Series([], dtype=pl.Utf8)}).write_parquet(tmp_path / "e.parquet")
    res = query_corpus(str(tmp_path / "e.parquet"), tmp_path / "o", progress=False, names=None)
    assert res.files["rows"].to_list() == [0] and res.stats.height == 0
    assert tables.read_table(tmp_path / "o" / "mentions", "mentions").height == 0
    assert read_mentions(tmp_path / "o").height == 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiasampError, match="no corpus files"):
        query_corpus(str(tmp_path / "empty"), tmp_path / "o2", progress=False)


# -- CLI -------------------------------------------------------------------------------------
def _app():
    """The `captions` commands on their own app (as cli.py registers them)."""
    import typer

    from biasamp.corpus.commands import register

    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps `captions` a sub-command
        pass

    return app


def test_cli_query_and_stats(cli_runner, tmp_path):
    app = _app()
    r = cli_runner.invoke(app, ["captions", "synthetic", "5000", "--out", str(tmp_path / "c"), "--rows-per-file", "2500"])
    assert r.exit_code == 0, r.output
    occ = tmp_path / "occ.txt"
    occ.write_text("nurse\nengineer\n", encoding="utf-8")
    r = cli_runner.invoke(app, ["captions", "query", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                                "--occupations", str(occ), "--lexicon", "extended", "--no-names", "--keep", "similarity"])
    assert r.exit_code == 0, r.output
    assert "5,000 captions scanned" in r.output
    m = read_mentions(tmp_path / "o")
    assert set(m["occupation"]) == {"nurse", "engineer"} and "similarity" in m.columns and "indicator_names" not in m.columns
    r = cli_runner.invoke(app, ["captions", "stats", str(tmp_path / "o")])
    assert r.exit_code == 0 and "nurse" in r.output
    # the engines: the same rows whichever runs
    r = cli_runner.invoke(app, ["captions", "query", str(tmp_path / "c"), "--out", str(tmp_path / "p"), "--occupations",
                                str(occ), "--lexicon", "extended", "--no-names", "--keep", "similarity",
                                "--exact", "polars", "--prefilter", "regex"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p" / "query.manifest.json").read_text())["matcher"]["exact"] == "polars"
    assert read_mentions(tmp_path / "p").sort("caption_id", "occupation").equals(m.sort("caption_id", "occupation"))
    r = cli_runner.invoke(app, ["captions", "query", str(tmp_path / "c"), "--out", str(tmp_path / "q"), "--exact", "fast"])
    assert r.exit_code == 2 and "unknown exact-stage engine" in r.output
    r = cli_runner.invoke(app, ["captions", "query", str(tmp_path / "nothing.parquet"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output
    r = cli_runner.invoke(app, ["captions", "stats", str(tmp_path)])
    assert r.exit_code == 2 and "not a query output folder" in r.output


def test_overwrite_discards_the_old_run_and_leftovers(tmp_path):
    d = make_corpus(3000, seed=5, out=tmp_path / "c", rows_per_file=1000)
    out = tmp_path / "o"
    first = query_corpus([str(p) for p in d], out, names=None, progress=False)
    # a folder an interrupted overwrite left behind
    (out / f"{query_mod.TRASH}dead" / "mentions").mkdir(parents=True)
    (out / f"{query_mod.TRASH}dead" / "mentions" / "part-x.parquet").write_bytes(b"junk")
    again = query_corpus([str(p) for p in d[:2]], out, names=None, progress=False, overwrite=True)
    assert not list(out.glob(f"{query_mod.TRASH}*"))
    assert again.files.height == 2 and first.files.height == 3
    assert read_mentions(out)["source"].n_unique() == 2
