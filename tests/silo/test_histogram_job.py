"""The histogram task library: its merge."""

import numpy as np

from fedsys.silo.histogram_job import sum_count_outputs
from fedsys.silo.task_registry import Output


def test_histogram_merge_is_independent_of_arrival_order():
    rng = np.random.default_rng(0)
    outs = [Output(rng.integers(0, 9, 8).astype("<i8").tobytes(), {"rows": 8, "sum": 0.5})
            for _ in range(5)]
    forward = sum_count_outputs(outs)
    backward = sum_count_outputs(outs[::-1])
    assert forward.payload == backward.payload
    assert forward.meta["rows"] == 40
