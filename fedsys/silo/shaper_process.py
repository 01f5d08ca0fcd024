"""The WAN shaping proxies in a process of their own, driven over a pipe in JSON lines.

:class:`~fedsys.silo.local_federation.LocalCluster` runs the coordinator in the caller's process;
proxies on a thread of that process would share its interpreter lock, so the
coordinator's Python work (merges, checksums) would stall the emulated network. This
process hosts every site's proxy and obeys commands on stdin, one JSON object a line:

- ``{"op": "add", "host": ..., "port": ..., "up": {...}, "down": {...}, "seed": n}``
  answers ``{"port": N}`` (the proxy's listening port);
- ``{"op": "set", "up": {...}, "down": {...}}`` changes every proxy, answers ``{"ok": true}``.

It exits at the end of its stdin (its parent closed the pipe or died).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import subprocess
import sys
import threading
from dataclasses import asdict
from typing import IO, Any

from fedsys.silo.shaper import LinkSettings, ShaperProxy
from fedsys.wire.supervise import child_env


async def serve(stdin: IO[bytes], stdout: IO[str]) -> None:
    """Run proxies as commanded on ``stdin`` until it ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    proxies: list[ShaperProxy] = []
    while line := await reader.readline():
        command = json.loads(line)
        up, down = LinkSettings(**command["up"]), LinkSettings(**command["down"])
        if command["op"] == "add":
            proxy = ShaperProxy(command["host"], int(command["port"]), up, down,
                                seed=command.get("seed"))
            reply: dict[str, Any] = {"port": await proxy.start()}
            proxies.append(proxy)
        else:
            for proxy in proxies:
                proxy.set_settings(up, down)
            reply = {"ok": True}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
    for proxy in proxies:
        await proxy.close()


class ShaperProcess:
    """A child process hosting shaping proxies (same verbs as :class:`ShaperThread`).

    Parameters
    ----------
    timeout_s
        Deadline of each command (the first one includes the child's start-up).
    """

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str] = queue.Queue()

    def start(self) -> None:
        """Start the child process."""
        env = child_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedsys.silo.shaper_process"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env)
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self._replies.put(line)

        threading.Thread(target=pump, daemon=True, name="shaper-replies").start()

    def _call(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        try:
            reply: dict[str, Any] = json.loads(self._replies.get(timeout=self.timeout_s))
        except queue.Empty:
            raise TimeoutError(
                f"the shaper process did not answer within {self.timeout_s} s"
            ) from None
        return reply

    def add_proxy(self, host: str, port: int, up: LinkSettings, down: LinkSettings,
                  seed: int | None = None) -> int:
        """Start a proxy to ``host:port``; return its port."""
        reply = self._call({"op": "add", "host": host, "port": port, "up": asdict(up),
                            "down": asdict(down), "seed": seed})
        return int(reply["port"])

    def set_all(self, up: LinkSettings, down: LinkSettings) -> None:
        """Give every proxy the same settings (takes effect for the next bytes)."""
        self._call({"op": "set", "up": asdict(up), "down": asdict(down)})

    def close(self) -> None:
        """End the child (closing its stdin; killed if it lingers)."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


if __name__ == "__main__":
    asyncio.run(serve(sys.stdin.buffer, sys.stdout))
