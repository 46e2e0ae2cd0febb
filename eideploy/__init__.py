"""eideploy: deep excitatory-inhibitory spiking networks, from training to DYNAP-SE2."""

__version__ = "0.1.0"
