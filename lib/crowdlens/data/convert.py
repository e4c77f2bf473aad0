"""Convert raw upstream files into the registry's tables.

Each converter takes ``[(SourceFile, local_path), ...]`` for one source and
writes its tables under ``dest`` (same relative paths and schemas as
``../shared/data``), pseudonymising authors on the way.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd
from tqdm import tqdm

from crowdlens.core.config import atomic_path
from crowdlens.data.pseudonym import pseudonymise
from crowdlens.data.registry import TABLES, DataError

Pairs = list[tuple["SourceFile", Path]]  # noqa: F821 (SourceFile lives in fetch)


def _write_table(name: str, frame: pd.DataFrame, dest: Path) -> Path:
    table = TABLES[name]
    frame = table.validate(frame.reset_index(drop=True), f"converted {name}")
    target = dest / table.relpath
    with atomic_path(target, suffix=target.suffix) as tmp:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return target


def _copy_verbatim(name: str, path: Path, dest: Path) -> Path:
    """CSV tables released as-is: validate, then copy the exact upstream bytes."""
    table = TABLES[name]
    table.validate(table.read(path), path)
    target = dest / table.relpath
    with atomic_path(target, suffix=target.suffix) as tmp:
        shutil.copyfile(path, tmp)
    return target


def _upstream_path(entry) -> PurePosixPath:
    # owner/repo/commit/<path in repo>
    return PurePosixPath(*PurePosixPath(entry.relpath).parts[3:])


# collective_action --------------------------------------------------------------------

def convert_collective_action(pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    out = {}
    for entry, path in pairs:
        split = {"train_set.csv": "train", "test_set.csv": "test"}.get(path.name)
        if split is None:
            raise DataError(f"unexpected collective_action file {entry.url}")
        out[f"collective_action_{split}"] = _copy_verbatim(f"collective_action_{split}", path, dest)
    return out


# reddit_political_2017_2018 -----------------------------------------------------------

POLITICAL_COLUMNS = ["subreddit", "kind", "author", "created_utc", "score", "num_comments", "title", "selftext", "body"]


def read_pushshift_lines(path: Path, kind: str) -> tuple[list[dict], int]:
    """Parse one JSON-lines dump; malformed lines (duplicated keys run together) are counted and dropped."""
    records, dropped = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            records.append(
                {
                    "subreddit": item.get("subreddit"),
                    "kind": kind,
                    "author": item.get("author"),
                    "created_utc": item.get("created_utc"),
                    "score": item.get("score"),
                    "num_comments": item.get("num_comments") if kind == "submission" else None,
                    "title": item.get("title") if kind == "submission" else None,
                    "selftext": item.get("selftext") if kind == "submission" else None,
                    "body": item.get("body") if kind == "comment" else None,
                }
            )
    return records, dropped


def convert_reddit_political(pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    records, dropped = [], 0
    for entry, path in tqdm(pairs, desc="reddit_political", disable=not progress):
        folder = _upstream_path(entry).parent.name  # clean_comments | clean_submissions
        kind = "comment" if "comments" in folder else "submission"
        rows, bad = read_pushshift_lines(path, kind)
        records.extend(rows)
        dropped += bad
    frame = pd.DataFrame.from_records(records, columns=POLITICAL_COLUMNS)
    frame["author"] = pseudonymise(frame["author"].astype("string"))
    frame.attrs["dropped_malformed_lines"] = dropped
    return {"reddit_political": _write_table("reddit_political", frame, dest)}


# reddit_us_local_covid_2020 -----------------------------------------------------------

COVID_FILE = re.compile(r"(?P<release>reddit_data(?:_0418)?)/(?P<scope>states|cities)/(?P<loc>[^/]+)/(?P=loc)_(?P<kind>posts|comments)\.csv$")
COVID_COLUMNS = ["id", "subreddit", "location", "scope", "kind", "author", "created_utc", "title", "selftext", "body", "link_flair_text"]


def _read_covid_csv(path: Path) -> pd.DataFrame:
    # keep "Nan" flairs literally, as the upstream CSVs spell them
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], index_col=False)


def convert_reddit_covid(pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    out: dict[str, Path] = {}
    chosen: dict[tuple[str, str, str], tuple[str, Path]] = {}
    for entry, path in pairs:
        upstream = str(_upstream_path(entry))
        if upstream.endswith("state_manual.csv"):
            out["covid_policy_dates"] = _copy_verbatim("covid_policy_dates", path, dest)
            continue
        match = COVID_FILE.search(upstream)
        if match is None:
            raise DataError(f"unexpected reddit_us_local_covid_2020 file {entry.url}")
        key = (match["scope"], match["loc"], match["kind"])
        # the 18 April release (reddit_data_0418) wins over the earlier one
        if key not in chosen or match["release"] == "reddit_data_0418":
            chosen[key] = (match["release"], path)
    frames = []
    for (scope, loc, kind), (_, path) in tqdm(sorted(chosen.items()), desc="reddit_covid", disable=not progress):
        raw = _read_covid_csv(path)
        frame = pd.DataFrame(
            {
                "id": raw["id"],
                "subreddit": raw["subreddit"] if kind == "posts" else pd.NA,
                "location": loc,
                "scope": "state" if scope == "states" else "city",
                "kind": "submission" if kind == "posts" else "comment",
                "author": raw["author"],
                "created_utc": raw["created_utc"],
                "title": raw["title"] if kind == "posts" else pd.NA,
                "selftext": raw["selftext"] if kind == "posts" else pd.NA,
                "body": raw["body"] if kind == "comments" else pd.NA,
                "link_flair_text": raw["link_flair_text"] if kind == "posts" else pd.NA,
            },
            columns=COVID_COLUMNS,
        )
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["created_utc"] = pd.to_numeric(frame["created_utc"]).astype("Int64")
    frame["author"] = pseudonymise(frame["author"].astype("string"))
    out["reddit_covid"] = _write_table("reddit_covid", frame, dest)
    return out


# weibo_ced ----------------------------------------------------------------------------

CED_NAME = re.compile(r"^\d+_(?P<post>[^_]+)_(?P<uid>\d+)\.json$")
BEIJING_OFFSET_S = 8 * 3600


def beijing_to_unix(dates: pd.Series) -> pd.Series:
    """Upstream reaction dates are Beijing wall-clock time (UTC+8); return unix UTC seconds."""
    parsed = pd.to_datetime(dates, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    seconds = (parsed - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1) - BEIJING_OFFSET_S
    return seconds.astype("Int64")


def convert_weibo_ced(pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    originals: dict[str, Path] = {}
    reposts: dict[str, tuple[str, Path]] = {}
    for entry, path in pairs:
        upstream = _upstream_path(entry)
        folder = upstream.parent.name
        if folder == "original-microblog":
            originals[upstream.name] = path
        elif folder in ("rumor-repost", "non-rumor-repost"):
            reposts[upstream.name] = ("rumor" if folder == "rumor-repost" else "non-rumor", path)
        else:
            raise DataError(f"unexpected weibo_ced file {entry.url}")
    posts, reactions = [], []
    for filename, path in tqdm(sorted(originals.items()), desc="weibo_ced", disable=not progress):
        match = CED_NAME.match(filename)
        if match is None or filename not in reposts:
            raise DataError(f"CED post {filename} has no matching repost file (rumor-repost / non-rumor-repost)")
        label, repost_path = reposts[filename]
        post = json.loads(path.read_text(encoding="utf-8"))
        user = post.get("user") or {}
        posts.append(
            {
                "post_id": match["post"],
                "label": label,
                "uid": match["uid"],
                "created_utc": post.get("time"),
                "text": post.get("text"),
                "reposts": post.get("reposts"),
                "comments": post.get("comments"),
                "likes": post.get("likes"),
                "pics": post.get("pics"),
                "has_url": post.get("has_url"),
                "author_verified": user.get("verified"),
                "author_gender": user.get("gender"),
                "author_followers": user.get("followers"),
                "author_friends": user.get("friends"),
                "author_messages": user.get("messages"),
                "author_location": user.get("location"),
            }
        )
        for item in json.loads(repost_path.read_text(encoding="utf-8")):
            reactions.append(
                {
                    "post_id": match["post"],
                    "reaction_id": item.get("mid"),
                    "parent_id": item.get("parent") or None,
                    "uid": item.get("uid"),
                    "text": item.get("text") or "",
                    "date": item.get("date"),
                }
            )
    post_frame = pd.DataFrame.from_records(posts)
    post_frame.insert(2, "author", pseudonymise(post_frame.pop("uid").astype("string")))
    reaction_frame = pd.DataFrame.from_records(reactions)
    reaction_frame.insert(3, "author", pseudonymise(reaction_frame.pop("uid").astype("string")))
    reaction_frame["created_utc"] = beijing_to_unix(reaction_frame.pop("date"))
    return {
        "ced_posts": _write_table("ced_posts", post_frame, dest),
        "ced_reactions": _write_table("ced_reactions", reaction_frame, dest),
    }


# weibo_smp2020_ewect ------------------------------------------------------------------

SMP_NAME = re.compile(r"^(?P<domain>usual|virus)_(?P<split>train|eval|test)(?:_labeled)?\.txt$")


def convert_smp2020(pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    frames = []
    for entry, path in pairs:
        match = SMP_NAME.match(path.name)
        if match is None:
            raise DataError(f"unexpected weibo_smp2020_ewect file {entry.url}")
        items = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame.from_records(items)
        frames.append(
            pd.DataFrame(
                {
                    "id": [f"{match['domain']}-{match['split']}-{i}" for i in frame["id"]],
                    "domain": match["domain"],
                    "split": match["split"],
                    "text": frame["content"],
                    "label": frame["label"],
                }
            )
        )
    return {"smp2020_ewect": _write_table("smp2020_ewect", pd.concat(frames, ignore_index=True), dest)}


CONVERTERS: dict[str, Callable[..., dict[str, Path]]] = {
    "collective_action": convert_collective_action,
    "reddit_political_2017_2018": convert_reddit_political,
    "reddit_us_local_covid_2020": convert_reddit_covid,
    "weibo_ced": convert_weibo_ced,
    "weibo_smp2020_ewect": convert_smp2020,
}


def convert_source(source: str, pairs: Pairs, dest: Path, progress: bool = True) -> dict[str, Path]:
    if source not in CONVERTERS:
        raise DataError(f"no converter for source '{source}'; known: {', '.join(CONVERTERS)}")
    return CONVERTERS[source](pairs, Path(dest), progress=progress)
