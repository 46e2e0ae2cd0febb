"""Deprecated location: validation moved to :mod:`eideploy.pipeline.validate` (comparisons and
report) and :mod:`eideploy.targets.dynapse2.plot` (``plot_mapping``). Kept for one release."""

__all__ = ["plot_mapping"]


def __getattr__(name: str):  # lazy: importing eideploy.validate must not import matplotlib
    if name == "plot_mapping":
        from ..targets.dynapse2.plot import plot_mapping

        return plot_mapping
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
