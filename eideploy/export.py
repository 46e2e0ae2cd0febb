"""Deprecated location: ``eideploy.export`` moved to :mod:`eideploy.pipeline.export`.

Kept as a thin re-export for one release so that existing scripts keep working.
"""

from .pipeline.export import *  # noqa: F401,F403
from .pipeline.export import __all__  # noqa: F401
