"""Device traces: compute speed, bandwidth and availability of a fleet of devices.

* :class:`DeviceFleet`: struct-of-arrays profiles with vectorised, stateless
  availability queries (``is_available``, ``available_clients``, ``online_until``).
* :func:`client_round_time`: download + compute + upload seconds per client.
* :func:`model_cost_ratio`: compute scaling relative to the trace's reference model;
  :func:`transfer_cost_ratio`: the same for transfer times.
* :func:`generate_fleet`: seeded generator calibrated to published statistics.
* :func:`load_fedscale` / :func:`save_fedscale`: FedScale's pickle pair, read with a
  restricted unpickler.
* :func:`load_fleet` / :func:`save_fleet`: fedsys's CSV format (``FORMAT.md``);
  :func:`load_default_fleet` reads the 1,000-device trace shipped in the package.
* :func:`load_fleet_file`, :func:`convert`, :func:`show`, :func:`summarize`,
  :func:`plot_histograms`: what ``fedsys traces convert/show`` call.
"""

from fedsys.traces.cost import (
    MOBILENET_V2_BYTES,
    MOBILENET_V2_MACS,
    MOBILENET_V2_PARAMS,
    count_macs,
    model_cost_ratio,
    transfer_cost_ratio,
)
from fedsys.traces.csvformat import load_default_fleet, load_fleet, save_fleet
from fedsys.traces.fedscale import (
    FedScaleTrace,
    TraceFormatError,
    fleet_from_fedscale,
    load_fedscale,
    save_fedscale,
)
from fedsys.traces.fleet import DeviceFleet, normalize_sessions
from fedsys.traces.generator import FleetProfile, generate_fleet
from fedsys.traces.report import (
    convert,
    format_summary,
    load_fleet_file,
    plot_histograms,
    show,
    summarize,
)
from fedsys.traces.safepickle import RestrictedUnpickler, load_restricted
from fedsys.traces.timing import client_round_time

__all__ = [
    "MOBILENET_V2_BYTES",
    "MOBILENET_V2_MACS",
    "MOBILENET_V2_PARAMS",
    "DeviceFleet",
    "FedScaleTrace",
    "FleetProfile",
    "RestrictedUnpickler",
    "TraceFormatError",
    "client_round_time",
    "convert",
    "count_macs",
    "fleet_from_fedscale",
    "format_summary",
    "generate_fleet",
    "load_default_fleet",
    "load_fedscale",
    "load_fleet",
    "load_fleet_file",
    "load_restricted",
    "model_cost_ratio",
    "normalize_sessions",
    "plot_histograms",
    "save_fedscale",
    "save_fleet",
    "show",
    "summarize",
    "transfer_cost_ratio",
]
