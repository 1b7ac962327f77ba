"""pinnace.client: how every component talks to the API server."""

from .config import ClientConfig, auto_config, in_cluster_config, load_kubeconfig
from .informer import Informer, InformerFactory, key_of, split_key
from .leaderelection import LeaderElector
from .rest import ApiError, Client, ResourceClient, retry_on_conflict
from .workqueue import ExponentialBackoff, ShutDown, WorkQueue

__all__ = [
    "ApiError", "Client", "ClientConfig", "ExponentialBackoff", "Informer", "InformerFactory",
    "LeaderElector", "ResourceClient", "ShutDown", "WorkQueue", "auto_config",
    "in_cluster_config", "key_of", "load_kubeconfig", "retry_on_conflict", "split_key",
]
