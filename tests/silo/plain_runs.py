"""Plain-value job runs for the engine's unit tests: sites, records, a spin job."""

from fedsys.silo.binding import SiteView
from fedsys.silo.job import JobBuilder
from fedsys.silo.jobrun import Bind, TaskRecord
from fedsys.silo.task_registry import Output

TASKS = frozenset({"silo.spin", "silo.histogram", "silo.sum_counts"})


def sites_of(*specs: tuple[str, int, tuple[str, ...]]) -> dict[str, SiteView]:
    return {name: SiteView(name, workers, datasets, TASKS) for name, workers, datasets in specs}


def record(task_id: str, site: str, compute_s: float = 0.01) -> TaskRecord:
    return TaskRecord(task_id, site, 0, 0.0, compute_s, 0.0, 8)


def binds(actions, site=None):
    return [a for a in actions if isinstance(a, Bind) and (site is None or a.site == site)]


def spin_job(n_per_dataset: int, datasets=("d0", "d1")):
    job = JobBuilder("spin")
    ids = [job.site_task(f"t/{d}/{i}", "silo.spin", {"value": 1}, dataset=d)
           for d in datasets for i in range(n_per_dataset)]
    job.merge("total", lambda outs: Output(b"", {"value": sum(o.meta["value"] for o in outs)}),
              ids)
    return job.build(results=["total"])
