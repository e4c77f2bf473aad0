"""Moved to ``crowdlens.crowd_response.replies`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.crowd_response.replies'])
