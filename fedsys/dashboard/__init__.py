"""A read-only web view over run folders: runs, rounds, client timelines, selectors, fleets.

The runtimes write their run folders; the dashboard reads them (never the other way:
no runtime imports this package) and pushes what was appended to open pages with
server-sent events. Needs the ``dashboard`` extra (Starlette, uvicorn).
"""

from fedsys.dashboard.catalog import RunCatalog, RunEntry, UnknownRunError
from fedsys.dashboard.reader import RunReader

__all__ = ["RunCatalog", "RunEntry", "RunReader", "UnknownRunError"]
