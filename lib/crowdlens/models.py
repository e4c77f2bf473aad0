"""Moved to ``crowdlens.core.hub``, ``crowdlens.participation.saved`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.core.hub', 'crowdlens.participation.saved'])
