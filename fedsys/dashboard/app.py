"""The dashboard's web application: a page, its static files and a read-only JSON API.

Routes (every one a GET; nothing starts, stops or changes a run)::

    /                               the page (one HTML file; views are drawn by app.js)
    /static/...                     the page's scripts, styles and the vendored uPlot
    /api/runs                       every run folder found, with its headline numbers
    /api/runs/{id}/data             one run: config, summary, rounds, timelines, status, silo
    /api/runs/{id}/timeline/{r}     round r's client timeline
    /api/runs/{id}/events?...       server-sent events: what was appended since
    /api/compare?run=a&run=b        several runs' accuracy and loss series

Run ids come from :class:`~fedsys.dashboard.catalog.RunCatalog`; an id that is not one
of its run folders (``../../etc``) is refused with 404, whatever it spells.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from fedsys.dashboard.catalog import RunCatalog, UnknownRunError
from fedsys.dashboard.reader import RunReader
from fedsys.metrics.writers import json_safe

STATIC_DIR = Path(__file__).parent / "static"
POLL_S = 0.25
"""How often an open event stream looks for appended records (the 2 s promise's margin)."""
HEARTBEAT_S = 15.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_COOKIE = "fedsys_dashboard_token"
COMPARE_FIELDS = ("round_idx", "start_s", "end_s", "wall_s", "accuracy", "test_loss", "train_loss")


def build_app(catalog: RunCatalog, token: str | None = None, loopback: bool = True) -> ASGIApp:
    """The ASGI application serving ``catalog``'s runs.

    Parameters
    ----------
    catalog
        The run folders this dashboard may read.
    token
        When set, every request must carry it (``?token=``, a ``Bearer`` header, or the
        cookie the page gets on its first visit); required off the loopback interface.
    loopback
        Bound to the loopback interface: only ``localhost`` Host headers are accepted
        (a web page elsewhere cannot rebind a name to it and read runs).
    """
    api = _Api(catalog)
    routes = [
        Route("/", _index),
        Route("/api/runs", api.runs),
        Route("/api/compare", api.compare),
        Route("/api/runs/{run_id:path}/data", api.data),
        Route("/api/runs/{run_id:path}/timeline/{round_idx:int}", api.timeline),
        Route("/api/runs/{run_id:path}/events", api.events),
        Route("/api/{rest:path}", _not_found),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = []
    if loopback:
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
        )
    app: ASGIApp = Starlette(routes=routes, middleware=middleware)
    if token:
        app = _TokenGate(app, token)
    return app


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


async def _not_found(request: Request) -> Response:
    return JSONResponse({"error": "no such API route"}, status_code=404)


def _json(value: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(json_safe(value), status_code=status_code)


class _Api:
    """Handlers over one catalog; file reads run in a worker thread."""

    def __init__(self, catalog: RunCatalog) -> None:
        self.catalog = catalog

    def _reader(self, request: Request) -> RunReader:
        return self.catalog.reader(request.path_params["run_id"])

    async def runs(self, request: Request) -> Response:
        return _json({"runs": await asyncio.to_thread(self._list_runs)})

    def _list_runs(self) -> list[dict[str, Any]]:
        rows = []
        for entry in self.catalog.scan():
            reader = self.catalog.reader(entry.run_id)
            reader.refresh()
            rows.append({"id": entry.run_id, "folder": str(entry.folder), **_headline(reader)})
        return rows

    async def data(self, request: Request) -> Response:
        try:
            reader = self._reader(request)
        except UnknownRunError as exc:
            return _json({"error": str(exc)}, 404)

        def read() -> dict[str, Any]:
            reader.refresh()
            return {
                "id": request.path_params["run_id"],
                "folder": str(reader.folder),
                "config": reader.config(),
                "summary": reader.summary(),
                "generation": reader.generation(),
                "rounds": reader.rounds(),
                "timelines": reader.timeline_overview(),
                "server_status": reader.status(),
                "silo": reader.silo(),
                "fidelity": reader.fidelity(),
                **_headline(reader),
            }

        return _json(await asyncio.to_thread(read))

    async def timeline(self, request: Request) -> Response:
        try:
            reader = self._reader(request)
        except UnknownRunError as exc:
            return _json({"error": str(exc)}, 404)
        round_idx = int(request.path_params["round_idx"])
        entry = await asyncio.to_thread(reader.timeline, round_idx)
        if entry is None:
            return _json({"error": f"round {round_idx} has no recorded timeline"}, 404)
        return _json(entry)

    async def compare(self, request: Request) -> Response:
        runs = []
        for run_id in request.query_params.getlist("run"):
            try:
                reader = self.catalog.reader(run_id)
            except UnknownRunError as exc:
                return _json({"error": str(exc)}, 404)
            await asyncio.to_thread(reader.refresh)
            rounds = [{k: r.get(k) for k in COMPARE_FIELDS} for r in reader.rounds()]
            runs.append({"id": run_id, "rounds": rounds, **_headline(reader)})
        return _json({"runs": runs})

    async def events(self, request: Request) -> Response:
        try:
            reader = self._reader(request)
        except UnknownRunError as exc:
            return _json({"error": str(exc)}, 404)
        params = request.query_params
        counts = {
            "rounds": _int(params.get("rounds")),
            "timelines": _int(params.get("timelines")),
            "server_status": _int(params.get("server_status")),
            "silo": _int(params.get("silo")),
            "generation": _int(params.get("generation")),
        }
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _event_stream(request, reader, counts), media_type="text/event-stream", headers=headers
        )


async def _event_stream(
    request: Request, reader: RunReader, counts: dict[str, int]
) -> AsyncIterator[str]:
    """Appended rounds, timelines and status samples, and the summary when it changes."""
    summary_sent = None
    quiet_s = 0.0
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        await asyncio.to_thread(reader.refresh)
        if reader.generation() != counts["generation"]:
            yield _event("reset", {"generation": reader.generation()})
            return  # the page reloads the run and opens a new stream
        sent = False
        for kind, read, count in (
            ("rounds", reader.rounds, reader.round_count),
            ("timelines", reader.timeline_overview, reader.timeline_count),
            ("server_status", reader.status, reader.status_count),
            ("silo", reader.silo, reader.silo_count),
        ):
            if count() > counts[kind]:
                rows = read(counts[kind])
                counts[kind] += len(rows)
                yield _event(kind, rows)
                sent = True
        summary = reader.summary()
        if summary is not None and summary != summary_sent:
            summary_sent = summary
            yield _event("summary", {"summary": summary, **_headline(reader)})
            sent = True
        quiet_s = 0.0 if sent else quiet_s + POLL_S
        if quiet_s >= HEARTBEAT_S:
            quiet_s = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


def _event(kind: str, payload: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(json_safe(payload), allow_nan=False)}\n\n"


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _headline(reader: RunReader) -> dict[str, Any]:
    """A run's name, state and headline numbers for the runs list."""
    config, summary = reader.config(), reader.summary()
    rounds = reader.rounds()
    evaluated = [r["accuracy"] for r in rounds if r.get("accuracy") is not None]
    last = rounds[-1] if rounds else {}
    source = summary or {}
    runtime = source.get("runtime") or ("deploy" if reader.status_count() else None)
    runtime = runtime or ("silo" if reader.silo_count() else None)
    runtime = runtime or ("fidelity" if reader.fidelity() is not None else None)
    runtime = runtime or ("sim" if config else None)
    return {
        "status": source.get("status", "running" if rounds else "waiting"),
        "runtime": runtime,
        "rounds_done": len(rounds),
        "rounds_total": config.get("rounds"),
        "selector": (config.get("selector") or {}).get("name"),
        "strategy": (config.get("strategy") or {}).get("name"),
        "mode": (config.get("round") or {}).get("mode"),
        "dataset": (config.get("dataset") or {}).get("name"),
        "target_accuracy": config.get("target_accuracy"),
        "final_accuracy": evaluated[-1] if evaluated else None,
        "best_accuracy": max(evaluated) if evaluated else None,
        "time_s": last.get("end_s"),
        "clock": "wall" if runtime == "deploy" else "virtual",
    }


class _TokenGate:
    """Refuses every request without the dashboard's token (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        from_query = given is not None
        given = given if given is not None else request.cookies.get(TOKEN_COOKIE)
        if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
            response = JSONResponse({"error": "this dashboard needs its token"}, 401)
            await response(scope, receive, send)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)  # type: ignore[arg-type]
