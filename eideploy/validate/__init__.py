"""Validation of mapped networks: comparisons, reports and plots (``plots.plot_mapping``).

Nothing here is imported at package load: matplotlib is imported by the functions that draw.
"""

__all__ = ["plot_mapping"]


def __getattr__(name: str):  # lazy: importing eideploy.validate must not import matplotlib
    if name == "plot_mapping":
        from .plots import plot_mapping

        return plot_mapping
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
