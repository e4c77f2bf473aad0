"""Bad data and a bad network, one test (or a few) per row of the hardening issue:
a fetch with no network stops at its first failure and says what to do instead; the
offline message mentions a partial file only when one is kept; `data check` on an
absent or empty folder says so; a check report shows cause and fix; the fix works
while CROWDLENS_DATA is set; an author column takes pseudonyms only.

Every server here binds 127.0.0.1, serves a bounded number of connections for a
bounded time and stops by itself."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import socket
import ssl
import struct
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from crowdlens import cli
from crowdlens.cli import app
from crowdlens.data import TABLES, DataFileError, DataNotFoundError, DataSchemaError, check, load_table
from crowdlens.data import fetch as fetch_module
from crowdlens.data.fetch import DownloadError, fetch
from crowdlens.data.pseudonym import not_pseudonymised
from crowdlens.data.registry import STATUS_CAUSE_CHARS
from conftest import write_manifest

runner = CliRunner()
RAW_NAME = "raw_user_name"  # obviously fake: no real username is written anywhere
FILES = 90  # a manifest of many files, so "stopped at the first failure" is visible


def sha12(name: str) -> str:
    return hashlib.sha256(f"crowdlens:{name}".encode()).hexdigest()[:12]


@pytest.fixture
def wide_console(monkeypatch):
    """The CLI's console without line wrapping, so a table cell reads as one string."""
    monkeypatch.setattr(cli, "console", Console(width=4000))


# --- local servers ----------------------------------------------------------------------

class TcpServer:
    """Accept on 127.0.0.1 and misbehave: 'reset' (read the request, then RST), 'silent'
    (hold the connection, never answer) or 'partial' (answer 100 of 1000 promised bytes,
    then close). Serves at most ``limit`` connections for at most ``lifetime`` s."""

    def __init__(self, mode: str, limit: int = 400, lifetime: float = 20.0):
        self.mode, self.limit, self.lifetime = mode, limit, lifetime
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        end = time.monotonic() + self.lifetime
        try:
            while not self._stop.is_set() and time.monotonic() < end and self.accepted < self.limit:
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    continue
                self.accepted += 1
                if self.mode == "silent":
                    self._held.append(conn)
                    continue
                conn.settimeout(0.5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)  # the request
                    if self.mode == "partial":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n"
                                     b"Connection: close\r\n\r\n" + b"x" * 100)
                    else:  # linger 0: close sends a RST instead of a FIN
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
        finally:
            for conn in self._held:
                conn.close()
            self.sock.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def tcp_server():
    servers: list[TcpServer] = []

    def start(mode: str) -> TcpServer:
        servers.append(TcpServer(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def refused_url():
    """A port bound but not listening: every connection is refused, and no one else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def many_files_manifest(path: Path, base_url: str, files: int = FILES, size: int = 1000) -> Path:
    """A weibo_ced manifest of ``files`` files, all at ``base_url``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "url", "sha256", "bytes"])
        for i in range(files):
            writer.writerow(["weibo_ced", f"{base_url}/thunlp/CED/0123abc/post{i:03d}.json", "0" * 64, size])
    return path


def timed_fetch(manifest: Path, dest: Path, **kwargs) -> tuple[DownloadError, float]:
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch(["weibo_ced"], dest=dest, manifest=manifest, progress=False, **kwargs)
    return err.value, time.monotonic() - start


def assert_offline_advice(message: str):
    assert "looks offline" in message
    assert "CROWDLENS_MIRROR" in message and "https://raw.githubusercontent.com" in message
    assert "CROWDLENS_DATA" in message and "../shared/data" in message


# --- 1. fetch with no network stops at the first failure --------------------------------

def test_fetch_refused_connections_stops_at_the_first_error_within_seconds(tmp_path, refused_url):
    manifest = many_files_manifest(tmp_path / "sources.csv", refused_url)
    error, seconds = timed_fetch(manifest, tmp_path / "data", timeout=1.0)
    assert seconds < 3, f"first error after {seconds:.2f} s"
    assert_offline_advice(str(error))
    assert "stopped at this first failure" in str(error)


@pytest.mark.parametrize("behaviour, bound", [("reset", 3), ("silent", 4)],
                         ids=["reset_connections_stop_at_the_first_error_and_cancel_pending_downloads",
                              "a_server_that_never_answers_stops_within_the_timeout"])
def test_fetch_from_a_bad_server(tmp_path, tcp_server, behaviour, bound):
    server = tcp_server(behaviour)
    manifest = many_files_manifest(tmp_path / "sources.csv", server.url)
    error, seconds = timed_fetch(manifest, tmp_path / "data", timeout=1.0)
    assert seconds < bound, f"first error after {seconds:.2f} s"
    assert_offline_advice(str(error))
    # 8 workers: about one connection each before the stop, never one per file
    assert server.accepted <= FILES // 3, f"{server.accepted} connections for {FILES} files"


def test_fetch_overall_deadline_stops_a_fetch_whose_requests_each_wait_long(tmp_path, tcp_server):
    server = tcp_server("silent")
    manifest = many_files_manifest(tmp_path / "sources.csv", server.url)
    error, seconds = timed_fetch(manifest, tmp_path / "data", timeout=30.0, deadline=1.0)
    assert seconds < 3, f"deadline error after {seconds:.2f} s"
    assert "deadline of 1 s" in str(error) and "--deadline" in str(error)
    assert "CROWDLENS_MIRROR" in str(error) and "CROWDLENS_DATA" in str(error)


def test_fetch_reuses_one_ssl_context_for_every_request(tmp_path, upstream_server, isolated_cache, monkeypatch):
    made, used = [], []
    real_context, real_urlopen = ssl.create_default_context, urllib.request.urlopen

    def counting_context(*args, **kwargs):
        made.append(real_context(*args, **kwargs))
        return made[-1]

    def recording_urlopen(*args, **kwargs):
        used.append(kwargs.get("context"))
        return real_urlopen(*args, **kwargs)

    monkeypatch.setattr(fetch_module.ssl, "create_default_context", counting_context)
    monkeypatch.setattr(urllib.request, "urlopen", recording_urlopen)
    manifest = write_manifest(tmp_path / "sources.csv", upstream_server)
    fetch(["weibo_smp2020_ewect", "collective_action"], dest=tmp_path / "data", manifest=manifest, progress=False)
    assert len(made) == 1 and len(used) >= 5
    assert all(context is made[0] for context in used)


def test_cli_fetch_offline_says_it_looks_offline_and_how_to_use_a_mirror_or_a_data_folder(tmp_path, refused_url):
    manifest = many_files_manifest(tmp_path / "sources.csv", refused_url)
    start = time.monotonic()
    result = runner.invoke(app, ["data", "fetch", "weibo_ced", "--manifest", str(manifest),
                                 "--dest", str(tmp_path / "data"), "--timeout", "1"])
    assert time.monotonic() - start < 5
    assert result.exit_code == 1, result.output
    assert_offline_advice(result.output)


def test_cli_fetch_has_timeout_and_deadline_options():
    result = runner.invoke(app, ["data", "fetch", "--help"])
    assert "--timeout" in result.output and "--deadline" in result.output


# --- 2. the offline message mentions a partial file only when one is kept ----------------

def test_offline_message_mentions_no_partial_file_when_none_is_kept(tmp_path, refused_url):
    manifest = many_files_manifest(tmp_path / "sources.csv", refused_url)
    error, _ = timed_fetch(manifest, tmp_path / "data", timeout=1.0)
    assert "partial" not in str(error)
    assert not list((tmp_path / "data").rglob("*.part"))  # and no empty one is left either


def test_offline_message_names_the_partial_file_when_one_is_kept(tmp_path, tcp_server):
    server = tcp_server("partial")
    manifest = many_files_manifest(tmp_path / "sources.csv", server.url, files=1)
    error, _ = timed_fetch(manifest, tmp_path / "data", timeout=1.0)
    parts = list((tmp_path / "data").rglob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 100
    assert f"partial file {parts[0]} (100 bytes) is kept" in str(error)
    assert "resumes it" in str(error) and "broke off" in str(error)


# --- 3. data check on an absent or empty folder says so ---------------------------------

def test_check_on_a_missing_data_folder_says_it_does_not_exist_and_lists_the_three_ways(tmp_path, monkeypatch):
    folder = tmp_path / "nowhere"
    monkeypatch.setenv("CROWDLENS_DATA", str(folder))
    report = check()
    assert set(report["status"]) == {"missing"}
    problem = report.attrs["problem"]
    assert f"{folder} (CROWDLENS_DATA is set to it) does not exist" in problem
    assert "(1) set CROWDLENS_DATA" in problem and "(2) place the shared data folder at ../shared/data" in problem
    assert "(3) run `crowdlens data fetch`" in problem and "user cache" in problem


def test_check_on_an_empty_data_folder_says_it_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDLENS_DATA", str(tmp_path))
    assert f"{tmp_path} (CROWDLENS_DATA is set to it) is empty" in check().attrs["problem"]


def test_check_on_a_folder_holding_no_table_says_so_and_spots_a_data_subfolder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a table")
    assert "holds none of the 8 tables" in check(tmp_path).attrs["problem"]
    (tmp_path / "data" / "reddit").mkdir(parents=True)
    (tmp_path / "data" / "reddit" / "us_state_covid_policy_dates.csv").write_text("state,date,change\n")
    assert f"Its subfolder {tmp_path / 'data'} does: point at that instead" in check(tmp_path).attrs["problem"]


def test_check_on_a_folder_with_some_tables_has_no_folder_problem(tmp_path):
    (tmp_path / "reddit").mkdir()
    (tmp_path / "reddit" / "us_state_covid_policy_dates.csv").write_text("state,date,change\nTexas,03/31/20,Stay home\n")
    report = check(tmp_path).set_index("table")
    assert "problem" not in report.attrs
    assert report.loc["covid_policy_dates", "status"] == "ok (1 rows; documented 43)"
    assert "crowdlens data fetch weibo_ced --dest" in report.loc["ced_posts", "fix"]


def test_cli_check_on_a_missing_data_folder_says_it_does_not_exist(tmp_path, monkeypatch, wide_console):
    monkeypatch.setenv("CROWDLENS_DATA", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["data", "check"])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Provide the data in one of three ways" in result.output
    assert "CROWDLENS_DATA" in result.output and "../shared/data" in result.output
    assert "crowdlens data fetch" in result.output


def test_cli_check_on_an_empty_data_folder_says_it_is_empty(tmp_path, wide_console):
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1 and f"{tmp_path} is empty" in result.output


# --- 4. a check report shows both the cause and the fix ---------------------------------

def long_bad_policy_file(folder: Path) -> Path:
    target = folder / "reddit" / "us_state_covid_policy_dates.csv"
    target.parent.mkdir(parents=True)
    rows = "".join(f"Texas,2020-03-{day:02d},A rather long description of policy change number {day}\n"
                   for day in range(1, 31))
    target.write_text("state,date,change\n" + rows)
    return target


def test_check_on_a_bad_file_shows_both_the_cause_and_the_fix(tmp_path):
    long_bad_policy_file(tmp_path)
    row = check(tmp_path).set_index("table").loc["covid_policy_dates"]
    assert row["status"].startswith("invalid: ") and "fails its schema" in row["status"]
    assert len(row["status"]) <= len("invalid: ") + STATUS_CAUSE_CHARS + len(" ...")
    assert f"crowdlens data fetch reddit_us_local_covid_2020 --dest {tmp_path}" in row["fix"]


def test_cli_check_on_a_bad_file_shows_the_fix_column(tmp_path, wide_console):
    long_bad_policy_file(tmp_path)
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "fails its schema" in result.output
    assert f"crowdlens data fetch reddit_us_local_covid_2020 --dest {tmp_path}" in result.output


# --- 5. fix advice that works while CROWDLENS_DATA is set -------------------------------

def corrupt_smp_file(folder: Path) -> Path:
    target = folder / "weibo" / "smp2020_ewect.parquet"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PAR1 this is no parquet file")
    return target


def test_fix_advice_with_crowdlens_data_set_rebuilds_in_that_folder_and_works(
        tmp_path, monkeypatch, upstream_server, isolated_cache):
    folder = tmp_path / "mydata"
    corrupt_smp_file(folder)
    monkeypatch.setenv("CROWDLENS_DATA", str(folder))
    with pytest.raises(DataFileError) as err:
        load_table("smp2020_ewect")
    message = str(err.value)
    command = f"crowdlens data fetch weibo_smp2020_ewect --dest {folder}"
    assert command in message and "which CROWDLENS_DATA overrides" in message
    assert "delete it" not in message
    # follow the advice, word for word, against the local upstream server
    manifest = write_manifest(tmp_path / "sources.csv", upstream_server)
    result = runner.invoke(app, [*command.split()[1:], "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert len(load_table("smp2020_ewect")) == 4


def test_fix_advice_in_the_user_cache_is_a_plain_fetch(isolated_cache, monkeypatch):
    monkeypatch.delenv("CROWDLENS_DATA", raising=False)
    corrupt_smp_file(isolated_cache / "data")
    with pytest.raises(DataFileError) as err:
        load_table("smp2020_ewect", isolated_cache / "data")
    assert "run `crowdlens data fetch weibo_smp2020_ewect` to rebuild it" in str(err.value)
    assert "--dest" not in str(err.value)


def test_missing_table_advice_with_crowdlens_data_set_fetches_into_that_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDLENS_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        load_table("ced_posts")
    assert f"`crowdlens data fetch weibo_ced --dest {tmp_path}` to fill {tmp_path} itself" in str(err.value)


# --- 6. an author column takes pseudonyms only ------------------------------------------

# one small valid frame per table with an author column
AUTHOR_TABLE_ROWS = {
    "reddit_political": pd.DataFrame({
        "subreddit": ["Liberal", "Conservative", "Anarchism"], "kind": ["comment", "submission", "comment"],
        "author": [sha12("fake_a"), "[deleted]", "AutoModerator"], "created_utc": [1522546910, 1522546920, 1522546930],
        "score": [3, 10, 1], "num_comments": [None, 4.0, None], "title": [None, "A title", None],
        "selftext": [None, "", None], "body": ["a comment", None, "a reminder"]}),
    "reddit_covid": pd.DataFrame({
        "id": ["t001", "t002", "t003"], "subreddit": ["texas", None, "chicago"],
        "location": ["texas", "oregon", "chicago"], "scope": ["state", "state", "city"],
        "kind": ["submission", "comment", "comment"], "author": [sha12("fake_b"), "[deleted]", "AutoModerator"],
        "created_utc": [1585000000, 1585000100, 1585000200], "title": ["Stay home", None, None],
        "selftext": ["", None, None], "body": [None, "a comment", "a reminder"], "link_flair_text": ["Nan", None, None]}),
    "ced_posts": pd.DataFrame({
        "post_id": ["p1", "p2"], "label": ["rumor", "non-rumor"], "author": [sha12("fake_c"), sha12("fake_d")],
        "created_utc": [1347336000, 1347336100], "text": ["a post", "another post"], "reposts": [5, 0],
        "comments": [1, 0], "likes": [0, 2], "pics": [0, 1], "has_url": [False, True],
        "author_verified": [True, None], "author_gender": ["f", None], "author_followers": [10.0, None],
        "author_friends": [3.0, None], "author_messages": [100.0, None], "author_location": ["Beijing", None]}),
    "ced_reactions": pd.DataFrame({
        "post_id": ["p1", "p1", "p2"], "reaction_id": ["r1", "r2", "r3"], "parent_id": [None, "r1", None],
        "author": [sha12("fake_e"), sha12("fake_f"), sha12("fake_e")], "text": ["a comment", "", "a repost"],
        "created_utc": [1347336500, 1347336600, None]}),
}


def write_table(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    target = folder / TABLES[name].relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    return target


def test_every_table_with_an_author_column_is_covered():
    assert {t.name for t in TABLES.values() if "author" in t.columns} == set(AUTHOR_TABLE_ROWS)


@pytest.mark.parametrize("name", sorted(AUTHOR_TABLE_ROWS))
def test_raw_username_in_author_column_is_refused_naming_the_column_and_the_rule(tmp_path, name):
    frame = AUTHOR_TABLE_ROWS[name].copy()
    write_table(tmp_path, name, frame)
    assert len(load_table(name, tmp_path)) == len(frame)  # the frame is valid as it is
    frame.loc[1, "author"] = RAW_NAME
    write_table(tmp_path, name, frame)
    with pytest.raises(DataSchemaError) as err:
        load_table(name, tmp_path)
    message = str(err.value)
    assert "column 'author'" in message and "1 of" in message and "the first at row 1" in message
    assert "exactly 12 lowercase hex characters" in message and "[deleted]" in message and "AutoModerator" in message
    assert "crowdlens.data.pseudonymise" in message
    assert RAW_NAME not in message  # the refusal never prints the name it refuses
    assert err.value.__suppress_context__  # nor does a chained pandera error, whose data holds it


@pytest.mark.parametrize("name", sorted(AUTHOR_TABLE_ROWS))
def test_check_refuses_raw_usernames_without_printing_them(tmp_path, name, wide_console):
    frame = AUTHOR_TABLE_ROWS[name].copy()
    frame.loc[0, "author"] = RAW_NAME
    write_table(tmp_path, name, frame)
    row = check(tmp_path).set_index("table").loc[name]
    assert row["status"].startswith("invalid: ") and "column 'author'" in row["status"]
    assert "pseudonymise" in row["fix"]
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1 and "not pseudonyms" in result.output
    assert RAW_NAME not in result.output


def test_missing_author_stays_refused_where_the_column_is_not_nullable(tmp_path):
    frame = AUTHOR_TABLE_ROWS["ced_reactions"].copy()
    frame["author"] = frame["author"].astype("string")
    frame.loc[0, "author"] = pd.NA
    write_table(tmp_path, "ced_reactions", frame)
    with pytest.raises(DataSchemaError, match="non-nullable|null"):
        load_table("ced_reactions", tmp_path)


def test_author_rule_takes_pseudonyms_and_the_not_people_markers_only():
    values = pd.Series([sha12("fake_g"), "[deleted]", "AutoModerator", None,
                        sha12("fake_g").upper(), sha12("fake_g") + "0", sha12("fake_g")[:11], RAW_NAME, "deleted"])
    assert not_pseudonymised(values).tolist() == [False] * 4 + [True] * 5
