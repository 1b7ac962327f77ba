"""pinnace.kubelet: the node agent. For now the simulated runtime (sim.py),
pod status building (podstatus.py) and pod IP allocation (ipam.py)."""

from .ipam import NodeIPAM, fallback_cidr
from .podstatus import running_status, terminated_status
from .sim import SimNodes, run_sim

__all__ = ["NodeIPAM", "SimNodes", "fallback_cidr", "run_sim", "running_status",
           "terminated_status"]
