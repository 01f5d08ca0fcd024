"""``sim.backend`` and its keys: built from the config, refused where they do not apply."""

from __future__ import annotations

import pytest

from fedsys.config import parse_config
from fedsys.config.loader import ConfigError
from fedsys.sim.assemble import build_simulator
from fedsys.sim.backends import RayBackend, SequentialBackend, VectorizedBackend, make_backend

SMALL = {"rounds": 1, "clients_per_round": 2, "dataset": {"num_clients": 4}}


def test_the_config_chooses_the_backend_and_its_settings() -> None:
    vectorized = build_simulator(
        parse_config({**SMALL, "sim": {"backend": "vectorized", "chunk_size": 4}})
    )
    ray = build_simulator(
        parse_config(
            {
                **SMALL,
                "sim": {"backend": "ray", "ray_workers": 3, "ray_worker_backend": "vectorized"},
            }
        )
    )

    assert isinstance(build_simulator(parse_config(SMALL)).backend, SequentialBackend)
    assert isinstance(vectorized.backend, VectorizedBackend) and vectorized.backend.chunk_size == 4
    assert isinstance(ray.backend, RayBackend)
    assert (ray.backend.workers, ray.backend.worker_backend) == (3, "vectorized")


@pytest.mark.parametrize(
    ("sim", "message"),
    [
        ({"backend": "gpu"}, "sim.backend"),
        ({"chunk_size": 8}, "sim.chunk_size does not apply to sim 'sequential'"),
        ({"backend": "vectorized", "ray_workers": 2}, "sim.ray_workers does not apply"),
        ({"backend": "ray", "chunk_size": 0}, "sim.chunk_size"),
    ],
)
def test_a_wrong_sim_key_is_named(sim: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**SMALL, "sim": sim})


def test_an_unknown_backend_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"sim\.backend must be one of sequential, vectorized"):
        make_backend("threads")
