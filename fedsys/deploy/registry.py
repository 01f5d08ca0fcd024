"""Who is connected to the aggregator, who is idle, and what each was asked to do.

A client has a stable integer id (its position in the token file, so ids survive
reconnects and server restarts) and at most one live session. The registry knows
nothing of gRPC: the service feeds it connects and disconnects, the round loop reads
``idle_ids`` as the selector's ``available``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from fedsys.core.update import ClientId
from fedsys.wire.protos import deploy_pb2


class UnknownClientError(LookupError):
    """A name or session the registry does not know (never registered, or superseded)."""


@dataclass(frozen=True)
class Assignment:
    """A task handed to one client: the update it uploads must quote all of this."""

    task_id: str
    client_id: ClientId
    round_idx: int
    model_version: int
    assigned_at: float
    upload_fraction: float = 1.0
    """Top-k share of the update this task uploads (``round.local_work.partial_upload``)."""


@dataclass
class Session:
    """One live connection of a client: its instruction queue and current assignment."""

    session_id: str
    client_id: ClientId
    name: str
    num_samples: int = 0
    speed: tuple[float, float, float] | None = None
    """The device's own (compute s/sample, down bytes/s, up bytes/s); ``None``: unknown."""
    online_until_s: float = float("nan")
    """When the device expects to go offline, on the run's clock (its report); NaN: unknown."""
    outbox: asyncio.Queue[deploy_pb2.Instruction] = field(default_factory=asyncio.Queue)
    assignment: Assignment | None = None
    uploading: str | None = None
    """The task whose update is being received (one upload of a task at a time)."""
    subscribed: bool = False
    closed: bool = False
    last_seen: float = field(default_factory=time.monotonic)


class ClientRegistry:
    """Sessions by client and id; the round loop's view of live clients.

    Parameters
    ----------
    names
        Every client name allowed to connect, in id order (the token file's order).
    """

    def __init__(self, names: list[str]) -> None:
        self.ids = {name: index for index, name in enumerate(names)}
        self.names = list(names)
        self.sessions: dict[ClientId, Session] = {}
        self.changed = asyncio.Event()
        self.on_disconnect: list = []

    def client_id(self, name: str) -> ClientId:
        """The stable id of a client name.

        Raises
        ------
        UnknownClientError
            If ``name`` has no id (it was not provisioned).
        """
        if name not in self.ids:
            raise UnknownClientError(f"client {name!r} is not provisioned on this server")
        return self.ids[name]

    def connect(self, name: str) -> Session:
        """Start a new session for ``name``; a previous one is closed (its work is lost)."""
        client_id = self.client_id(name)
        old = self.sessions.get(client_id)
        if old is not None:
            self.disconnect(old.session_id)
        session = Session(secrets.token_hex(16), client_id, name)
        self.sessions[client_id] = session
        self._notify()
        return session

    def session(self, name: str, session_id: str) -> Session:
        """The live session ``session_id`` of ``name``.

        Raises
        ------
        UnknownClientError
            If it is not the client's current session.
        """
        session = self.sessions.get(self.client_id(name))
        if session is None or session.session_id != session_id or session.closed:
            raise UnknownClientError(f"session {session_id[:8]}... of {name!r} is not live")
        return session

    def disconnect(self, session_id: str) -> Session | None:
        """End a session; callbacks learn of a lost assignment (a dropout)."""
        for client_id, session in list(self.sessions.items()):
            if session.session_id == session_id and not session.closed:
                session.closed = True
                session.outbox.put_nowait(deploy_pb2.Instruction())  # wakes its stream: it ends
                del self.sessions[client_id]
                for callback in self.on_disconnect:
                    callback(session)
                self._notify()
                return session
        return None

    def idle_ids(self) -> np.ndarray:
        """Ids of subscribed clients without an assignment: the selector's ``available``."""
        idle = [
            cid
            for cid, s in self.sessions.items()
            if s.subscribed and not s.closed and s.assignment is None
        ]
        return np.asarray(sorted(idle), dtype=np.int64)

    def online_until(self, client_ids: np.ndarray) -> np.ndarray:
        """Each client's reported session end (NaN: unknown or not connected)."""
        sessions = [self.sessions.get(int(c)) for c in np.asarray(client_ids).tolist()]
        return np.array([np.nan if s is None else s.online_until_s for s in sessions])

    def busy_count(self) -> int:
        """Connected clients still working on an assignment."""
        return sum(1 for s in self.sessions.values() if s.assignment is not None)

    def assign(self, assignment: Assignment, instruction: deploy_pb2.Instruction) -> None:
        """Hand ``instruction`` to the client's live session."""
        session = self.sessions[assignment.client_id]
        session.assignment = assignment
        session.outbox.put_nowait(instruction)

    def release(self, client_id: ClientId, task_id: str) -> None:
        """The client is done with ``task_id`` (uploaded, refused or abandoned): idle again."""
        session = self.sessions.get(client_id)
        if session is not None and session.assignment and session.assignment.task_id == task_id:
            session.assignment = None
            self._notify()

    def broadcast(self, instruction: deploy_pb2.Instruction) -> None:
        """Queue ``instruction`` for every live session."""
        for session in self.sessions.values():
            session.outbox.put_nowait(instruction)

    def _notify(self) -> None:
        self.changed.set()

    async def wait_change(self, timeout_s: float) -> None:
        """Return when a client connects, disconnects or becomes idle, or after ``timeout_s``."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout_s)
