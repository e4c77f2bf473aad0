"""Data registry, loaders, fetch + convert (see ``registry`` for resolution rules)."""

from crowdlens.data.registry import (  # noqa: F401
    SOURCES,
    TABLES,
    DataError,
    DataFileError,
    DataNotFoundError,
    DataSchemaError,
    UnknownDatasetError,
    check,
    data_dir,
    get_table,
    load_ced_posts,
    load_ced_reactions,
    load_collective_action,
    load_covid_policy_dates,
    load_reddit_covid,
    load_reddit_political,
    load_smp2020_ewect,
    load_table,
    table_path,
)
from crowdlens.data.pseudonym import NOT_PEOPLE, pseudonymise  # noqa: F401
from crowdlens.data.reddit import covid_state, reddit_text, state_code  # noqa: F401
from crowdlens.data.schemas import EMOTIONS, PARTICIPATION_LEVELS  # noqa: F401
