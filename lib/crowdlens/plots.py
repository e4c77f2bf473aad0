"""Moved to ``crowdlens.core.plots`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.core.plots'])
