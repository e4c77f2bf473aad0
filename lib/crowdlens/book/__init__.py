"""The book runner: MyST chapters → executed notebooks (papermill) → Jupyter Book HTML,
with each chapter's provenance (``runner``). It may import every other layer."""

from crowdlens.book.runner import (  # noqa: F401
    PROFILES,
    BookError,
    ChapterFailed,
    ChapterRun,
    ParameterError,
    book_dir,
    build_book,
    build_html,
    chapter_parameters,
    chapter_source,
    chapters_src_dir,
    executed_dir,
    execute_chapter,
    html_dir,
    profile_parameters,
    read_notebook,
    toc_chapters,
    validate_parameters,
    write_provenance_page,
)
from crowdlens.core.config import git_commit  # noqa: F401
