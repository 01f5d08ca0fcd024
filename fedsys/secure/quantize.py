"""Map real vectors to integers modulo 2^bits, so masked sums wrap without overflow.

Each coordinate is clipped to ``[-clip_range, clip_range]`` and scaled to
``[0, levels]`` with ``levels = floor((2^bits - 1) / max_summands)``, so the sum of up
to ``max_summands`` quantized vectors never exceeds ``2^bits - 1``: summing modulo
2^bits is then exact, and dequantizing the sum needs only the number of summands.
Rounding is stochastic (unbiased), drawn from a CSPRNG-seeded generator.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from fedsys.secure.crypto import mask_dtype


@dataclass(frozen=True)
class Quantizer:
    """Clip-and-scale quantization shared by every client of one round and the server.

    Parameters
    ----------
    clip_range
        Values are clipped to ``[-clip_range, clip_range]``.
    bits
        Integers live modulo 2^bits (8 to 48, so every level is exact in float64).
    max_summands
        Most vectors that will be summed (the round's selected clients).
    """

    clip_range: float = 8.0
    bits: int = 32
    max_summands: int = 1

    def __post_init__(self) -> None:
        if not 8 <= self.bits <= 48:
            raise ValueError(f"bits must be between 8 and 48, got {self.bits}")
        if not self.clip_range > 0:
            raise ValueError(f"clip_range must be positive, got {self.clip_range}")
        if not 1 <= self.max_summands < 2 ** (self.bits - 1):
            raise ValueError(f"max_summands {self.max_summands} does not fit {self.bits} bits")

    @property
    def levels(self) -> int:
        """Largest quantized value of one coordinate."""
        return ((1 << self.bits) - 1) // self.max_summands

    @property
    def step(self) -> float:
        """Real value of one quantization step."""
        return 2 * self.clip_range / self.levels

    def quantize(self, values: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Clip, scale and stochastically round; ``rng`` defaults to a CSPRNG-seeded one."""
        rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        scaled = np.clip(np.asarray(values, dtype=np.float64), -self.clip_range, self.clip_range)
        scaled += self.clip_range
        scaled *= self.levels / (2 * self.clip_range)
        floor = np.floor(scaled)
        floor += rng.random(floor.shape) < (scaled - floor)
        np.minimum(floor, self.levels, out=floor)
        return floor.astype(mask_dtype(self.bits))

    def dequantize_sum(self, total: np.ndarray, summands: int) -> np.ndarray:
        """The real sum of ``summands`` vectors from the sum of their quantized forms.

        Raises
        ------
        ValueError
            If more summands than the quantizer was built for.
        """
        if not 0 < summands <= self.max_summands:
            raise ValueError(f"{summands} summands, the quantizer allows 1..{self.max_summands}")
        return total.astype(np.float64) * self.step - summands * self.clip_range
