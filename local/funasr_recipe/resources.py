"""How many CPUs a job may use: its allocation, not the machine's size.

One rule for every tool that sets torch (or engine) threads by default: a
Slurm job's ``--cpus-per-task`` (``SLURM_CPUS_PER_TASK``), then a Grid Engine
job's slots (``NSLOTS``, ``-pe smp N``), then the CPUs this process may run
on (its affinity mask: what ``nproc`` prints, also inside a cgroup or
``taskset``), then the machine's CPU count.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

log = logging.getLogger(__name__)

#: Environment variables holding a job's CPU allocation, first found wins.
ALLOCATION_VARS = ("SLURM_CPUS_PER_TASK", "NSLOTS")


def allocated_cpus(env: Mapping[str, str] | None = None) -> int:
    """The number of CPUs this job was given (see the module's docstring)."""
    env = os.environ if env is None else env
    for var in ALLOCATION_VARS:
        value = env.get(var, "").strip()
        if value:
            if value.isdigit() and int(value) > 0:
                return int(value)
            log.warning("ignoring %s=%r: not a positive whole number", var, value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


__all__ = ["ALLOCATION_VARS", "allocated_cpus"]
