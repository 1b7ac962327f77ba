"""Scheduling logic: cache, queue, framework, plugins and preemption (no I/O)."""

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.framework import (
    DEFAULT_SCHEDULER,
    Profile,
    ScheduleResult,
    binding_for,
    default_profile,
    fit_error_message,
    pod_scheduled_condition_unschedulable,
    schedule,
)
from pinnace.scheduler.preemption import find_preemption
from pinnace.scheduler.queue import QueuedPod, SchedulingQueue

__all__ = [
    "DEFAULT_SCHEDULER",
    "NodeInfo",
    "PodInfo",
    "Profile",
    "QueuedPod",
    "ScheduleResult",
    "SchedulerCache",
    "SchedulingQueue",
    "binding_for",
    "default_profile",
    "find_preemption",
    "fit_error_message",
    "pod_scheduled_condition_unschedulable",
    "schedule",
]
