"""The dataset registry: which tables exist, where they are found, how they load.

Resolution order for the data folder (first that applies):

1. ``CROWDLENS_DATA`` when set;
2. ``../shared/data`` beside the project checkout, when it exists;
3. the user cache ``$CROWDLENS_CACHE/data`` (default ``~/.cache/crowdlens/data``),
   filled by ``crowdlens data fetch``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd
import pandera.errors
import pandera.pandas as pa
import pyarrow

from crowdlens.core.config import cache_dir, project_root
from crowdlens.data import schemas
from crowdlens.data.pseudonym import PSEUDONYM_RULE, not_pseudonymised


class DataError(RuntimeError):
    """Base class of every data problem; the message always names the fix.

    ``cause`` says what is wrong and ``fix`` what to do, kept apart so that a report
    can shorten a long cause and still show the whole fix; ``str()`` is both.
    """

    def __init__(self, cause: str, fix: str = ""):
        self.cause, self.fix = cause, fix
        super().__init__(f"{cause} {fix}" if fix else cause)


class UnknownDatasetError(DataError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataNotFoundError(DataError, FileNotFoundError):
    pass


class DataFileError(DataError):
    """A file exists but cannot be read (truncated, corrupt, wrong format)."""


class DataSchemaError(DataError):
    """A file reads but its table does not have the documented schema."""


def _repair_ced_reaction_times(frame: pd.DataFrame) -> pd.DataFrame:
    # The shared copy of ced_reactions stores created_utc in units of 1000 s
    # (a datetime64[ms] → seconds slip upstream of this project) and NaT as the
    # int64 minimum. Put it back in seconds (±1000 s) so both sources agree.
    times = frame["created_utc"]
    valid = times.dropna()
    if len(valid) and valid.median() < 1e8:
        times = times.where(times >= 0) * 1000
        frame = frame.assign(created_utc=times.astype("Int64"))
    return frame


def _add_missing_augmentation(frame: pd.DataFrame) -> pd.DataFrame:
    # The released test set has no AugmentationType column: none of its rows is augmented.
    if "AugmentationType" not in frame.columns:
        frame = frame.assign(AugmentationType=pd.NA)
    return frame


@dataclass(frozen=True)
class Table:
    """One table of the registry: a file under the data folder and its schema."""

    name: str
    relpath: str
    source: str  # the dataset name in data/sources.csv it is rebuilt from
    schema: pa.DataFrameSchema
    description: str
    documented_rows: int
    fixup: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, compare=False)
    # CSV cells read as missing; the collective-action release writes "None" for empty
    na_values: tuple[str, ...] = ("",)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    def read(self, path: Path) -> pd.DataFrame:
        try:
            if path.suffix == ".parquet":
                return pd.read_parquet(path)
            # keep_default_na with "" only: the Reddit CSVs carry a literal "Nan" flair
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=list(self.na_values))
        except (pyarrow.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataFileError(
                f"{path} could not be read as {path.suffix[1:]} ({type(exc).__name__}: {exc}).",
                f"The file is truncated or corrupt: {rebuild_advice(self, path)}.",
            ) from exc

    def validate(self, frame: pd.DataFrame, path: Path | str = "<memory>") -> pd.DataFrame:
        if self.fixup is not None:
            frame = self.fixup(frame)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataSchemaError(
                f"{path}: table '{self.name}' lacks column(s) {missing}; expected exactly "
                f"{self.columns}.",
                f"The file is not the documented table: {rebuild_advice(self, path)}.",
            )
        frame = frame[self.columns]
        try:
            return self.schema.validate(frame)
        except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as exc:
            if _is_pseudonym_failure(exc):
                raise self._raw_authors_error(frame, exc.column_name, path) from None
            raise DataSchemaError(
                f"{path}: table '{self.name}' fails its schema: {_shorten(str(exc))}.",
                f"{_capitalised(rebuild_advice(self, path))}.",
            ) from exc

    def _raw_authors_error(self, frame: pd.DataFrame, column: str, path: Path | str) -> DataSchemaError:
        # Counts and a row number only: the refused values are usernames and must not be printed.
        # ``from None`` above drops pandera's exception, whose data would carry them too.
        bad = not_pseudonymised(frame[column]).to_numpy()
        first = int(bad.argmax())
        return DataSchemaError(
            f"{path}: table '{self.name}' column '{column}' holds {int(bad.sum()):,} of {len(bad):,} "
            f"values that are not pseudonyms (the first at row {first}); the rule: every author "
            f"must be {PSEUDONYM_RULE}. Raw usernames must never reach the book.",
            f"Pseudonymise the column with crowdlens.data.pseudonymise, or {rebuild_advice(self, path)} "
            f"(the conversion pseudonymises authors).",
        )


def _shorten(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _is_pseudonym_failure(exc: Exception) -> bool:
    return getattr(getattr(exc, "check", None), "name", None) == schemas.PSEUDONYM_CHECK


def _same_folder(a: Path | str, b: Path | str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _folder_of(table: "Table", path: Path | str) -> Path | None:
    """The data folder holding ``path`` as ``table``'s file, or None (a frame in memory)."""
    parts = PurePosixPath(table.relpath).parts
    path = Path(path)
    if len(path.parts) > len(parts) and path.parts[-len(parts):] == parts:
        return path.parents[len(parts) - 1]
    return None


def fetch_command(source: str | None, folder: Path | str | None) -> str:
    """The ``crowdlens data fetch`` that writes ``source``'s tables into ``folder``.

    A plain fetch fills the user cache only, so any other folder needs ``--dest``.
    """
    name = f" {source}" if source else ""
    if folder is None or _same_folder(folder, default_cache_data_dir()):
        return f"`crowdlens data fetch{name}`"
    return f"`crowdlens data fetch{name} --dest {shlex.quote(str(folder))}`"


def rebuild_advice(table: "Table", path: Path | str) -> str:
    """How to replace ``table``'s bad file ``path``: advice that works where that file lives."""
    folder = _folder_of(table, path)
    if folder is None or _same_folder(folder, default_cache_data_dir()):
        return f"run {fetch_command(table.source, None)} to rebuild it"
    advice = (f"replace it from a good copy of the data, or rebuild it in that folder with "
              f"{fetch_command(table.source, folder)}")
    env = os.environ.get("CROWDLENS_DATA")
    if env and _same_folder(folder, env):
        advice += (f" (a plain `crowdlens data fetch` fills the user cache {default_cache_data_dir()}, "
                   f"which CROWDLENS_DATA overrides)")
    return advice


def three_ways(folder: Path | str, source: str | None = None, relpath: str | None = None) -> str:
    """The three ways to provide data, worded for a lookup in ``folder``."""
    what = relpath or "the tables"
    beside = project_root()
    shared = f" ({beside.parent / 'shared' / 'data'})" if beside is not None else ""
    cache = default_cache_data_dir()
    way3 = f"run {fetch_command(source, None)} to download and convert {what} into the user cache {cache}"
    if not _same_folder(folder, cache):
        # said plainly: the cache is read only when neither of the first two applies
        way3 += (f" (read only when neither (1) nor (2) applies), or {fetch_command(source, folder)} "
                 f"to fill {folder} itself")
    return (f"Provide the data in one of three ways: (1) set CROWDLENS_DATA to a folder holding "
            f"{what}; (2) place the shared data folder at ../shared/data beside the project{shared}; "
            f"(3) {way3}.")


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table("collective_action_train", "collective_action/train_set.csv", "collective_action",
              schemas.COLLECTIVE_ACTION, "Pera & Aiello crowd-labelled + augmented training comments", 1817,
              na_values=("", "None")),
        Table("collective_action_test", "collective_action/test_set.csv", "collective_action",
              schemas.COLLECTIVE_ACTION, "Pera & Aiello held-out test comments (crowd labels only)", 809,
              fixup=_add_missing_augmentation, na_values=("", "None")),
        Table("reddit_political", "reddit/political_2017_2018.parquet", "reddit_political_2017_2018",
              schemas.REDDIT_POLITICAL, "Five ideological subreddits, Nov 2017 - Oct 2018", 282243),
        Table("reddit_covid", "reddit/us_local_covid_2020.parquet", "reddit_us_local_covid_2020",
              schemas.REDDIT_COVID, "US state and city subreddits, 31 Dec 2019 - 18 Apr 2020", 525699),
        Table("covid_policy_dates", "reddit/us_state_covid_policy_dates.csv", "reddit_us_local_covid_2020",
              schemas.COVID_POLICY_DATES, "Dated COVID-19 policy events for CA, IL, NY, OR, TX", 43),
        Table("ced_posts", "weibo/ced_posts.parquet", "weibo_ced",
              schemas.CED_POSTS, "CED Weibo posts (rumor / non-rumor)", 3387),
        Table("ced_reactions", "weibo/ced_reactions.parquet", "weibo_ced",
              schemas.CED_REACTIONS, "Reposts and comments of the CED posts", 1275180,
              fixup=_repair_ced_reaction_times),
        Table("smp2020_ewect", "weibo/smp2020_ewect.parquet", "weibo_smp2020_ewect",
              schemas.SMP2020_EWECT, "SMP2020-EWECT Weibo emotion evaluation", 15606),
    ]
}

SOURCES: dict[str, list[str]] = {}
for _table in TABLES.values():
    SOURCES.setdefault(_table.source, []).append(_table.name)


def get_table(name: str) -> Table:
    if name not in TABLES:
        raise UnknownDatasetError(
            f"unknown dataset '{name}'. Valid tables: {', '.join(TABLES)}; "
            f"valid sources for `crowdlens data fetch`: {', '.join(SOURCES)}."
        )
    return TABLES[name]


def sources_for(names: list[str] | None) -> list[str]:
    """Map table or source names to source names (all sources when ``names`` is empty)."""
    if not names:
        return list(SOURCES)
    result: list[str] = []
    for name in names:
        source = name if name in SOURCES else get_table(name).source
        if source not in result:
            result.append(source)
    return result


def shared_data_dir() -> Path | None:
    root = project_root()
    if root is None:
        return None
    candidate = root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def default_cache_data_dir() -> Path:
    return cache_dir() / "data"


def data_dir() -> Path:
    """The data folder the loaders read, by the resolution order of this module. Used in the data_tour chapter."""
    env = os.environ.get("CROWDLENS_DATA")
    if env:
        return Path(env).expanduser()
    shared = shared_data_dir()
    if shared is not None:
        return shared
    return default_cache_data_dir()


def table_path(name: str, data_folder: Path | str | None = None) -> Path:
    table = get_table(name)
    folder = Path(data_folder) if data_folder is not None else data_dir()
    path = folder / table.relpath
    if not path.is_file():
        how = (
            f"CROWDLENS_DATA is set to {os.environ['CROWDLENS_DATA']}"
            if data_folder is None and os.environ.get("CROWDLENS_DATA")
            else f"looked in {folder}"
        )
        raise DataNotFoundError(
            f"no data found for '{name}' ({how}; missing {table.relpath}).",
            three_ways(folder, table.source, table.relpath),
        )
    return path


def folder_problem(folder: Path | str) -> str | None:
    """Why ``folder`` yields no table at all (absent, empty, none of the tables), or None."""
    folder = Path(folder).expanduser()
    env = os.environ.get("CROWDLENS_DATA")
    named = " (CROWDLENS_DATA is set to it)" if env and _same_folder(env, folder) else ""
    if not folder.exists():
        problem = f"the data folder {folder}{named} does not exist."
    elif not folder.is_dir():
        problem = f"the data folder {folder}{named} is not a folder."
    elif not any(folder.iterdir()):
        problem = f"the data folder {folder}{named} is empty."
    elif not any((folder / t.relpath).is_file() for t in TABLES.values()):
        problem = (f"the data folder {folder}{named} holds none of the {len(TABLES)} tables "
                   f"(e.g. {next(iter(TABLES.values())).relpath}).")
        if any((folder / "data" / t.relpath).is_file() for t in TABLES.values()):
            problem += f" Its subfolder {folder / 'data'} does: point at that instead."
    else:
        return None
    return f"{_capitalised(problem)} {three_ways(folder)}"


def load_table(name: str, data_folder: Path | str | None = None) -> pd.DataFrame:
    """Read and validate one registry table; see ``TABLES`` for the names."""
    table = get_table(name)
    path = table_path(name, data_folder)
    return table.validate(table.read(path), path)


# One function per dataset -------------------------------------------------------------

def load_collective_action(split: str = "train", data_folder: Path | str | None = None) -> pd.DataFrame:
    """Pera & Aiello (ICWSM 2025) annotated comments; ``split`` is 'train' or 'test'.
    Used in the annotation, data_tour and training chapters."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return load_table(f"collective_action_{split}", data_folder)


def load_reddit_political(data_folder: Path | str | None = None) -> pd.DataFrame:
    """Anarchism, communism, Liberal, Conservative, Libertarian (Pushshift, 2017-2018).
    Used in the data_tour and reddit_communities chapters."""
    return load_table("reddit_political", data_folder)


def load_reddit_covid(data_folder: Path | str | None = None) -> pd.DataFrame:
    """50 state and 18 city subreddits in the first COVID-19 wave (2019-12-31 - 2020-04-18).
    Used in the data_tour chapter."""
    return load_table("reddit_covid", data_folder)


def load_covid_policy_dates(data_folder: Path | str | None = None) -> pd.DataFrame:
    """Dated state policy events; ``date`` stays MM/DD/YY text as upstream, parse with ``format='%m/%d/%y'``.
    Used in the data_tour and reddit_communities chapters."""
    return load_table("covid_policy_dates", data_folder)


def load_ced_posts(data_folder: Path | str | None = None) -> pd.DataFrame:
    """CED Weibo posts (Song et al. 2018) with rumor labels and author metadata.
    Used in the data_tour and weibo_crowds chapters."""
    return load_table("ced_posts", data_folder)


def load_ced_reactions(data_folder: Path | str | None = None) -> pd.DataFrame:
    """Reposts/comments of the CED posts; ``text`` is '' for a bare repost.
    Used in the data_tour and weibo_crowds chapters."""
    return load_table("ced_reactions", data_folder)


def load_smp2020_ewect(data_folder: Path | str | None = None) -> pd.DataFrame:
    """SMP2020-EWECT Weibo texts with six emotions (virus and usual domains).
    Used in the data_tour and weibo_crowds chapters."""
    return load_table("smp2020_ewect", data_folder)


#: How much of a failure's cause a ``check`` status keeps; the fix has its own column.
STATUS_CAUSE_CHARS = 200


def check(data_folder: Path | str | None = None) -> pd.DataFrame:
    """Validate every table of a data folder; one row per table with rows, status and fix.

    When the folder yields no table at all (absent, empty, none of the tables), the
    report's ``attrs["problem"]`` says so and how to provide the data.
    Used in the data_tour chapter.
    """
    folder = Path(data_folder) if data_folder is not None else data_dir()
    records = []
    for table in TABLES.values():
        record = {"table": table.name, "source": table.source, "file": table.relpath, "rows": None, "fix": ""}
        try:
            frame = load_table(table.name, folder)
        except DataNotFoundError:
            # the folder holds other tables: fill in this one (folder_problem covers none at all)
            record["status"] = "missing"
            record["fix"] = (f"Run {fetch_command(table.source, folder)}, or copy {table.relpath} "
                             f"there from a good copy of the data.")
        except DataError as exc:
            # the file column names the file: the status spends its characters on the cause
            path = str(folder / table.relpath)
            cause = exc.cause.removeprefix(f"{path}: ").removeprefix(f"{path} ")
            record["status"] = f"invalid: {_shorten(cause, STATUS_CAUSE_CHARS)}"
            record["fix"] = exc.fix
        else:
            record["rows"] = len(frame)
            record["status"] = "ok" if len(frame) == table.documented_rows else (
                f"ok ({len(frame)} rows; documented {table.documented_rows})"
            )
        records.append(record)
    report = pd.DataFrame.from_records(records, columns=["table", "source", "file", "rows", "status", "fix"])
    problem = folder_problem(folder)
    if problem is not None:
        report.attrs["problem"] = problem
    return report
