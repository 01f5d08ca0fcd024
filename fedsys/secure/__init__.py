"""Secure aggregation (SecAgg+): the server learns only the sum of the clients' inputs.

Pure protocol code, no I/O: key agreement (X25519), masks (AES-CTR PRG), Shamir
shares over a prime field, quantization to integers modulo 2^bits, the client and
server state machines, and an in-process driver. Deployment and federated analytics
move the messages; the simulator charges the measured costs.
"""

from fedsys.secure.client import SecAggClient
from fedsys.secure.errors import ProtocolViolationError, SecureAggregationError
from fedsys.secure.graph import default_degree, neighbour_graph
from fedsys.secure.in_process import STEPS, StepTimes, secure_sum
from fedsys.secure.messages import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    RoundSetup,
    SecureSum,
    UnmaskReply,
    UnmaskRequest,
)
from fedsys.secure.quantize import Quantizer
from fedsys.secure.server import SecAggServer, threshold_for

__all__ = [
    "STEPS",
    "EncryptedShare",
    "KeyAdvert",
    "MaskedInput",
    "ProtocolViolationError",
    "Quantizer",
    "RoundSetup",
    "SecAggClient",
    "SecAggServer",
    "SecureAggregationError",
    "SecureSum",
    "StepTimes",
    "UnmaskReply",
    "UnmaskRequest",
    "default_degree",
    "neighbour_graph",
    "secure_sum",
    "threshold_for",
]
