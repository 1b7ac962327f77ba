"""The scheduler's plugins (upstream's default set)."""

from pinnace.scheduler.plugins.imagelocality import ImageLocality
from pinnace.scheduler.plugins.interpodaffinity import InterPodAffinity
from pinnace.scheduler.plugins.nodeaffinity import NodeAffinity
from pinnace.scheduler.plugins.nodebasics import NodeName, NodeUnschedulable, TaintToleration
from pinnace.scheduler.plugins.nodeports import NodePorts
from pinnace.scheduler.plugins.noderesources import NodeResourcesBalancedAllocation, NodeResourcesFit
from pinnace.scheduler.plugins.podtopologyspread import PodTopologySpread
from pinnace.scheduler.plugins.volumebinding import VolumeBinding

__all__ = [
    "ImageLocality",
    "InterPodAffinity",
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "NodeResourcesBalancedAllocation",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "PodTopologySpread",
    "TaintToleration",
    "VolumeBinding",
]
