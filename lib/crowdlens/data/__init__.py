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
from crowdlens.data.pseudonym import pseudonymise  # noqa: F401
