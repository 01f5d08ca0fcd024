"""Streamed block merges on plain values: blocks pushed as inputs arrive, sealed, or
abandoned and merged whole."""

import numpy as np

from fedsys.silo.job import JobBuilder
from fedsys.silo.jobrun import JobRun, Push, PushPart, Seal, settle
from fedsys.silo.mode import EngineMode
from fedsys.silo.task_registry import Output
from tests.silo.plain_runs import binds, record, sites_of


class _ByteSum:
    """A block merge for hand checks: the byte-wise sum (mod 256) of its inputs."""

    block_bytes = 4

    def merge_block(self, inputs, metas):
        return (sum(np.frombuffer(v, np.uint8).astype(np.int64) for v in inputs) % 256
                ).astype(np.uint8).tobytes()

    def finish_meta(self, metas):
        return {"inputs": len(metas)}


def _streaming_job(blocks=None):
    """t0 (d0) and t1 (d1) -> block merge g -> task "next" (d0) consuming g."""
    job = JobBuilder("stream")
    job.constant("w", Output(bytes(range(8)), {}))
    t0 = job.site_task("t0", "silo.spin", {}, ["w"], dataset="d0")
    t1 = job.site_task("t1", "silo.spin", {}, ["w"], dataset="d1")
    g = job.block_merge("g", blocks or _ByteSum(), ["w", t0, t1])
    job.site_task("next", "silo.spin", {}, [g], dataset="d0")
    return job.build(results=["next"])


def _filled(first_half: bytes) -> bytearray:
    buf = bytearray(8)
    buf[:4] = first_half
    return buf


def test_block_merge_streams_blocks_to_the_consumer_site_and_seals_them():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(), EngineMode.sol(max_degree=2), sites)
    assert {b.spec.task_id: b.site for b in binds(run.start())} == {
        "t0": "a", "t1": "b", "next": "a"}
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    # Block 0 is merged once both uploads hold it, and pushed to where "next" is bound.
    assert run.on_progress("a", "t0", 0, {}, buf0, 4) == []
    first = run.on_progress("b", "t1", 0, {}, buf1, 4)
    assert first == [PushPart("a", "g", 0, bytes([0x11, 0x12, 0x13, 0x14]), 8)]
    buf0[4:], buf1[4:] = b"\x02" * 4, b"\x20" * 4
    settle(run, run.on_output("a", "t0", Output(buf0, {}), record("t0", "a")))
    last = settle(run, run.on_output("b", "t1", Output(buf1, {}), record("t1", "b")))
    # The rest goes as a part, then the seal; no whole push of "g".
    assert PushPart("a", "g", 4, bytes([0x26, 0x27, 0x28, 0x29]), 8) in last
    assert Seal("a", "g") in last
    assert not [a for a in last if isinstance(a, Push)]
    assert run.outputs["g"] == Output(bytes([0x11, 0x12, 0x13, 0x14, 0x26, 0x27, 0x28, 0x29]),
                                      {"inputs": 3})
    assert run.stats["streamed_merges"] == 1 and run.stats["abandoned_streams"] == 0


def test_block_merge_is_whole_in_baseline_and_the_same_bytes():
    outputs = {}
    for name, mode in {"sol": EngineMode.sol(max_degree=2),
                       "baseline": EngineMode.baseline()}.items():
        run = JobRun(_streaming_job(), mode, sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",))))
        run.start()
        run.on_request("a", 1)
        run.on_request("b", 1)
        buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
        parts = run.on_progress("a", "t0", 0, {}, buf0, 8)
        parts += run.on_progress("b", "t1", 0, {}, buf1, 8)
        assert bool(parts) == (name == "sol")
        settle(run, run.on_output("a", "t0", Output(buf0, {}), record("t0", "a")))
        settle(run, run.on_output("b", "t1", Output(buf1, {}), record("t1", "b")))
        outputs[name] = run.outputs["g"]
    assert outputs["sol"] == outputs["baseline"]


def test_a_stream_whose_input_was_accepted_from_another_buffer_is_merged_again_whole():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(), EngineMode.sol(max_degree=2), sites)
    run.start()
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    run.on_progress("a", "t0", 0, {}, buf0, 4)
    assert run.on_progress("b", "t1", 0, {}, buf1, 4)  # block 0 went out from buf1's bytes
    buf0[4:] = b"\x02" * 4
    settle(run, run.on_output("a", "t0", Output(buf0, {}), record("t0", "a")))
    other = bytes([0x30] * 8)  # t1 accepted from another upload: block 0 was wrong
    last = settle(run, run.on_output("b", "t1", Output(other, {}), record("t1", "b")))
    assert Push("a", "g") in last and not [a for a in last if isinstance(a, Seal)]
    assert run.outputs["g"].payload == bytes([0x31, 0x32, 0x33, 0x34, 0x36, 0x37, 0x38, 0x39])
    assert run.stats["abandoned_streams"] == 1


class _NeedsCount(_ByteSum):
    """Like :class:`_ByteSum`, but each input's metadata must carry ``n``."""

    def merge_block(self, inputs, metas):
        assert all("n" in meta for meta in metas[1:]), "an input without n"
        return super().merge_block(inputs, metas)


def test_a_stream_the_merge_cannot_use_is_abandoned_and_the_merge_runs_whole():
    sites = sites_of(("a", 1, ("d0",)), ("b", 1, ("d1",)))
    run = JobRun(_streaming_job(_NeedsCount()), EngineMode.sol(max_degree=2), sites)
    run.start()
    buf0, buf1 = _filled(b"\x01" * 4), _filled(b"\x10" * 4)
    run.on_progress("a", "t0", 0, {"n": 1}, buf0, 4)
    assert run.on_progress("b", "t1", 0, {}, buf1, 4) == []  # no "n" yet: not streamed
    assert run.stats["abandoned_streams"] == 1 and "g" not in run.streams
    buf0[4:], buf1[4:] = b"\x02" * 4, b"\x20" * 4
    settle(run, run.on_output("a", "t0", Output(buf0, {"n": 1}), record("t0", "a")))
    last = settle(run, run.on_output("b", "t1", Output(buf1, {"n": 1}), record("t1", "b")))
    assert Push("a", "g") in last
    assert run.outputs["g"].payload == bytes([0x11, 0x12, 0x13, 0x14, 0x26, 0x27, 0x28, 0x29])
