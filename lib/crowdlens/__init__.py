"""CrowdLens: the tested library behind the CrowdLens book.

Chapters call into these modules; every figure's code is one hop away:
``data`` (registry, loaders, fetch), ``models`` (offline defaults, hub ids),
``book`` (papermill runner, provenance), ``plots`` (the book's look), ``cli``.
"""

__version__ = "0.1.0"
