"""Moved to ``crowdlens.core.explore``, ``crowdlens.core.sampling``, ``crowdlens.data.reddit`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.core.explore', 'crowdlens.core.sampling', 'crowdlens.data.reddit'])
