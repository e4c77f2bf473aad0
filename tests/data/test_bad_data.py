"""Bad data, one test (or a few) per row of the hardening issue: `data check` on an
absent or empty folder says so; a check report shows cause and fix; the fix works
while CROWDLENS_DATA is set."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from crowdlens import cli
from crowdlens.cli import app
from crowdlens.data import DataFileError, DataNotFoundError, check, load_table
from crowdlens.data.registry import STATUS_CAUSE_CHARS
from conftest import write_manifest

runner = CliRunner()


@pytest.fixture
def wide_console(monkeypatch):
    """The CLI's console without line wrapping, so a table cell reads as one string."""
    monkeypatch.setattr(cli, "console", Console(width=4000))


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
