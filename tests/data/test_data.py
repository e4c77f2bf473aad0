"""crowdlens.data: registry resolution, loaders on the real data, fetch + convert over
real HTTP on 127.0.0.1, and every bad input's error message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from crowdlens.data import (
    DataFileError,
    DataNotFoundError,
    DataSchemaError,
    UnknownDatasetError,
    check,
    data_dir,
    load_ced_posts,
    load_ced_reactions,
    load_collective_action,
    load_covid_policy_dates,
    load_reddit_covid,
    load_reddit_political,
    load_smp2020_ewect,
    load_table,
    pseudonymise,
)
from crowdlens.data.fetch import ChecksumError, fetch, read_manifest
from crowdlens.data.pseudonym import pseudonymise_one
from conftest import UPSTREAM, write_manifest


def sha12(name: str) -> str:
    return hashlib.sha256(f"crowdlens:{name}".encode()).hexdigest()[:12]


# --- pseudonymisation -------------------------------------------------------------------

def test_pseudonym_rule_matches_readme():
    assert pseudonymise_one("UtahAffairsMan") == sha12("UtahAffairsMan")
    assert pseudonymise_one("[deleted]") == "[deleted]"
    assert pseudonymise_one("AutoModerator") == "AutoModerator"
    series = pseudonymise(pd.Series(["a", None, "a", "AutoModerator"], dtype="string"))
    assert series.tolist()[0] == series.tolist()[2] == sha12("a")
    assert pd.isna(series.iloc[1]) and series.iloc[3] == "AutoModerator"


# --- resolution -------------------------------------------------------------------------

def test_crowdlens_data_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDLENS_DATA", str(tmp_path))
    assert data_dir() == tmp_path


def test_shared_folder_beside_the_checkout_comes_next_then_the_cache(tmp_path, monkeypatch):
    from crowdlens.data import registry

    monkeypatch.delenv("CROWDLENS_DATA", raising=False)
    monkeypatch.setenv("CROWDLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "project_root", lambda: tmp_path / "project")
    (tmp_path / "project").mkdir()
    assert data_dir() == tmp_path / "cache" / "data"  # no ../shared/data: the fetch cache
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir() == tmp_path / "shared" / "data"


def test_no_data_error_names_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDLENS_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError) as err:
        load_smp2020_ewect()
    message = str(err.value)
    assert "CROWDLENS_DATA" in message and "../shared/data" in message
    assert "crowdlens data fetch weibo_smp2020_ewect" in message


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownDatasetError) as err:
        load_table("reddit_politcal")
    assert "reddit_political" in str(err.value) and "smp2020_ewect" in str(err.value)


# --- loaders on the real shared data ----------------------------------------------------

def test_collective_action_counts_match_readme(shared_data):
    train, test = load_collective_action("train"), load_collective_action("test")
    assert len(train) == 1817 and len(test) == 809
    assert train["Label"].value_counts().to_dict() == {
        "Problem-Solution": 553, "Call-to-action": 365, "Intention": 285, "Execution": 189}
    assert train["Label"].isna().sum() == 425
    assert train["AugmentationType"].value_counts(dropna=False).to_dict() == {
        "Synthetic": 764, "RedditExtension": 684, pd.NA: 369} or \
        train["AugmentationType"].isna().sum() == 369
    assert test["Label"].isna().sum() == 600 and test["AugmentationType"].isna().all()


def test_reddit_and_weibo_tables_match_readme(shared_data):
    political = load_reddit_political()
    assert len(political) == 282243
    counts = political.groupby(["subreddit", "kind"]).size()
    assert counts[("Conservative", "submission")] == 57889
    assert counts[("communism", "comment")] == 53593
    covid = load_reddit_covid()
    assert len(covid) == 525699 and covid["subreddit"].notna().sum() == 95430 + 125849
    assert covid.groupby("scope")["location"].nunique().to_dict() == {"city": 18, "state": 50}
    assert len(load_covid_policy_dates()) == 43
    posts = load_ced_posts()
    assert posts["label"].value_counts().to_dict() == {"non-rumor": 1849, "rumor": 1538}
    smp = load_smp2020_ewect()
    assert smp.groupby(["domain", "split"]).size().to_dict() == {
        ("usual", "eval"): 2000, ("virus", "eval"): 2000, ("virus", "test"): 3000, ("virus", "train"): 8606}


def test_ced_reaction_times_are_seconds_after_repair(shared_data):
    reactions = load_ced_reactions()
    assert len(reactions) == 1275180
    assert (reactions["text"] != "").sum() == 768573
    posts = load_ced_posts().set_index("post_id")["created_utc"]
    joined = reactions.dropna(subset=["created_utc"]).join(posts.rename("post_time"), on="post_id")
    # reactions come after their post (the shared copy stored times in kiloseconds)
    lag_days = (joined["created_utc"] - joined["post_time"]) / 86400
    assert lag_days.median() > 0 and lag_days.quantile(0.01) > -1
    assert reactions["created_utc"].min() > 1.2e9


def test_authors_are_pseudonymised_in_shared_data(shared_data):
    political = load_reddit_political()
    authors = political["author"]
    looks_hashed = authors.str.fullmatch(r"[0-9a-f]{12}") | authors.isin(["[deleted]", "AutoModerator"])
    assert looks_hashed.all()
    assert sha12("UtahAffairsMan") in set(authors)


def test_check_reports_every_table(shared_data):
    report = check()
    assert set(report["status"]) == {"ok"}
    assert report.set_index("table")["rows"]["ced_posts"] == 3387


# --- bad files --------------------------------------------------------------------------

def test_truncated_parquet_is_a_clear_error(tmp_path, shared_data):
    target = tmp_path / "weibo" / "smp2020_ewect.parquet"
    target.parent.mkdir(parents=True)
    target.write_bytes((shared_data / "weibo" / "smp2020_ewect.parquet").read_bytes()[:5000])
    with pytest.raises(DataFileError) as err:
        load_smp2020_ewect(tmp_path)
    assert "truncated or corrupt" in str(err.value) and "crowdlens data fetch weibo_smp2020_ewect" in str(err.value)


def test_missing_column_is_a_clear_error(tmp_path, shared_data):
    frame = pd.read_parquet(shared_data / "weibo" / "smp2020_ewect.parquet").drop(columns=["label"])
    target = tmp_path / "weibo" / "smp2020_ewect.parquet"
    target.parent.mkdir(parents=True)
    frame.to_parquet(target)
    with pytest.raises(DataSchemaError) as err:
        load_smp2020_ewect(tmp_path)
    assert "lacks column(s) ['label']" in str(err.value)


def test_bad_value_is_a_schema_error(tmp_path):
    target = tmp_path / "reddit" / "us_state_covid_policy_dates.csv"
    target.parent.mkdir(parents=True)
    target.write_text("state,date,change\nTexas,2020-03-31,Stay at home order\n")
    with pytest.raises(DataSchemaError, match="fails its schema"):
        load_covid_policy_dates(tmp_path)


# --- fetch + convert over local HTTP ----------------------------------------------------

def test_fetch_converts_every_source(tmp_path, upstream_server, isolated_cache):
    manifest = write_manifest(tmp_path / "sources.csv", upstream_server)
    written = fetch(dest=tmp_path / "data", manifest=manifest, progress=False)
    assert set(written) == {
        "collective_action_train", "collective_action_test", "reddit_political", "reddit_covid",
        "covid_policy_dates", "ced_posts", "ced_reactions", "smp2020_ewect"}
    report = check(tmp_path / "data")
    assert all(s.startswith("ok") for s in report["status"]), report

    political = load_reddit_political(tmp_path / "data")
    # 5 well-formed lines; the line with duplicated keys run together is dropped
    assert len(political) == 4
    assert set(political["author"]) == {sha12("UtahAffairsMan"), "[deleted]", "AutoModerator", sha12("mutual_aid_fan")}
    comment = political[political["kind"] == "comment"]
    assert comment["title"].isna().all() and comment["num_comments"].isna().all()

    covid = load_reddit_covid(tmp_path / "data")
    assert "old001" not in set(covid["id"])  # the 0418 release replaces the older file
    assert "nyc001" in set(covid["id"])  # a file only in the older release is kept
    assert covid.set_index("id").loc["fcmc9ef", "location"] == "northdakota"
    assert covid.set_index("id").loc["eiddy5", "link_flair_text"] == "Nan"

    posts = load_ced_posts(tmp_path / "data").set_index("post_id")
    assert posts.loc["yBmepBtUB", "label"] == "rumor" and posts.loc["85jBAr", "label"] == "non-rumor"
    assert pd.isna(posts.loc["85jBAr", "author_verified"])
    reactions = load_ced_reactions(tmp_path / "data").set_index("reaction_id")
    # 2012-09-11 12:00:00 in Beijing is 04:00:00 UTC
    assert reactions.loc["zzTest001", "created_utc"] == int(pd.Timestamp("2012-09-11 04:00:00", tz="UTC").timestamp())
    assert reactions.loc["zzTest002", "parent_id"] == "zzTest001" and reactions.loc["zzTest002", "text"] == ""
    assert pd.isna(reactions.loc["zzTest001", "parent_id"])

    smp = load_smp2020_ewect(tmp_path / "data")
    assert sorted(smp["id"]) == ["usual-eval-7", "virus-eval-1", "virus-train-1", "virus-train-2"]


def test_converted_rows_equal_the_shared_rows(tmp_path, upstream_server, isolated_cache, shared_data):
    """Fixture rows copied from the real upstream files convert to the shared tables' rows."""
    manifest = write_manifest(tmp_path / "sources.csv", upstream_server)
    dest = tmp_path / "data"
    fetch(["weibo_ced", "reddit_political", "reddit_covid", "smp2020_ewect"], dest=dest, manifest=manifest, progress=False)

    def same_row(frame_a, frame_b, key, value, columns):
        a = frame_a[frame_a[key] == value][columns].reset_index(drop=True)
        b = frame_b[frame_b[key] == value][columns].reset_index(drop=True)
        assert len(a) == 1 and len(b) >= 1
        pd.testing.assert_frame_equal(a, b.iloc[:1], check_dtype=True)

    ours, shared = load_ced_posts(dest), load_ced_posts()
    same_row(ours, shared, "post_id", "yBmepBtUB", list(ours.columns))
    ours_r, shared_r = load_ced_reactions(dest), load_ced_reactions()
    cols = ["post_id", "reaction_id", "parent_id", "author", "text"]
    same_row(ours_r, shared_r, "reaction_id", "cgot8x", cols)
    exact = ours_r.set_index("reaction_id").loc["cgot8x", "created_utc"]
    repaired = shared_r.set_index("reaction_id").loc["cgot8x", "created_utc"]
    assert 0 <= exact - repaired < 1000  # the shared copy keeps kiloseconds only

    ours_p, shared_p = load_reddit_political(dest), load_reddit_political()
    key = shared_p["created_utc"] == 1522546910
    assert (shared_p[key]["author"] == ours_p[ours_p["created_utc"] == 1522546910]["author"].iloc[0]).any()
    ours_c, shared_c = load_reddit_covid(dest), load_reddit_covid()
    same_row(ours_c, shared_c, "id", "fcmc9ef", list(ours_c.columns))
    same_row(ours_c, shared_c, "id", "eiddy5", list(ours_c.columns))
    same_row(load_smp2020_ewect(dest), load_smp2020_ewect(), "id", "virus-eval-1", ["id", "domain", "split", "label"])


def test_fetch_resumes_a_partial_download(tmp_path, upstream_server, isolated_cache):
    from conftest import RangeRequestHandler

    manifest = write_manifest(tmp_path / "sources.csv", upstream_server)
    entry = next(e for e in read_manifest(manifest) if e.url.endswith("virus_train.txt"))
    final = tmp_path / "data" / "raw" / entry.relpath
    final.parent.mkdir(parents=True)
    source = UPSTREAM / entry.relpath
    Path(str(final) + ".part").write_bytes(source.read_bytes()[:20])
    fetch(["weibo_smp2020_ewect"], dest=tmp_path / "data", manifest=manifest, progress=False)
    assert "bytes=20-" in RangeRequestHandler.range_requests
    assert final.read_bytes() == source.read_bytes()
    assert not Path(str(final) + ".part").exists()


def test_sha256_mismatch_names_file_and_removes_partial(tmp_path, upstream_server, isolated_cache):
    rel = "BrownSweater/BERT_SMP2020-EWECT/e928cec001824668999ed02326aacbea0d369563/data/raw/virus_train.txt"
    manifest = write_manifest(tmp_path / "sources.csv", upstream_server, overrides={rel: "0" * 64})
    with pytest.raises(ChecksumError) as err:
        fetch(["smp2020_ewect"], dest=tmp_path / "data", manifest=manifest, progress=False)
    actual = hashlib.sha256((UPSTREAM / rel).read_bytes()).hexdigest()
    message = str(err.value)
    assert "virus_train.txt" in message and "0" * 64 in message and actual in message
    assert not list((tmp_path / "data" / "raw").rglob("*.part"))
    assert not (tmp_path / "data" / "weibo" / "smp2020_ewect.parquet").exists()


def test_fetch_unknown_name_lists_valid(tmp_path):
    with pytest.raises(UnknownDatasetError, match="weibo_ced"):
        fetch(["weibo"], dest=tmp_path)


def test_manifest_in_repo_matches_shared_sources():
    ours = read_manifest()
    assert len(ours) == 6966
    assert {e.dataset for e in ours} == {
        "collective_action", "reddit_political_2017_2018", "reddit_us_local_covid_2020", "weibo_ced", "weibo_smp2020_ewect"}
    assert all(len(e.sha256) == 64 and e.url.startswith("https://raw.githubusercontent.com/") for e in ours)
