"""eideploy: deep excitatory-inhibitory spiking networks, from training to DYNAP-SE2."""

from ._lazy import lazy_exports

__version__ = "0.1.0"

# imported on first use (PEP 562): ``import eideploy`` stays light (no torch, no compiler)
_EXPORTS = {"pipeline.deploy": ("deploy", "Deployment")}

__all__ = ["__version__", "deploy", "Deployment"]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
