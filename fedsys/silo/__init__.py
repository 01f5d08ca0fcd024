"""Cross-silo engine (Sol, NSDI 2020): a coordinator and site managers over gRPC.

Jobs are small DAGs of per-site tasks and merges (:mod:`~fedsys.silo.job`); task code is
registered by name on the sites (:mod:`~fedsys.silo.task_registry`). The engine binds tasks
early and decouples sending outputs from computing them (:mod:`~fedsys.silo.jobrun`),
or runs the late-binding, coupled baseline in the same code. A WAN-shaping proxy
(:mod:`~fedsys.silo.shaper`) emulates far networks between real processes.
"""

from fedsys.silo.histogram_job import histogram_job
from fedsys.silo.job import Job, JobBuilder, Merge, SiteTask
from fedsys.silo.mode import EngineMode, FailurePolicy, JobFailedError
from fedsys.silo.shaper import LinkSettings, ShaperProxy
from fedsys.silo.task_registry import REGISTRY, Output, TaskContext, task

__all__ = [
    "REGISTRY",
    "EngineMode",
    "FailurePolicy",
    "Job",
    "JobBuilder",
    "JobFailedError",
    "LinkSettings",
    "Merge",
    "Output",
    "ShaperProxy",
    "SiteTask",
    "TaskContext",
    "histogram_job",
    "task",
]
