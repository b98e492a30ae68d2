"""The FastAPI application the web tests serve (uvicorn on asyncio, hypercorn on trio):

/crunch?seconds=S  a sync endpoint spinning S (30) s, under a middleware giving up after 1 s
            (``anyio.move_on_after``) with a 504
/dependency a sync endpoint whose sync dependency spins 30 s, under the same middleware
/stream     a sync endpoint streaming a sync generator: a first line, then a 30 s spin
/fast       answers "fast"
/stats      JSON: slow functions running now, and those that ran their finally block

With HARDSTOP_STOCK=1 in the environment the one-liner below is left out: anyio's
stock ``to_thread.run_sync`` runs the sync code (the baseline).
"""

from __future__ import annotations

import os
import threading
import time

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

import hardstop.anyio

if os.environ.get("HARDSTOP_STOCK") != "1":
    anyio.to_thread.run_sync = hardstop.anyio.run_sync  # the one-liner of docs/web.md

LIMIT = 1.0
counts = {"busy": 0, "finally_ran": 0, "completed": 0}
counts_lock = threading.Lock()


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def slow(seconds=30.0):
    with counts_lock:
        counts["busy"] += 1
    try:
        spin(seconds)
        with counts_lock:
            counts["completed"] += 1
    finally:
        with counts_lock:
            counts["busy"] -= 1
            counts["finally_ran"] += 1


class TimeLimit:
    """ASGI middleware: a request still running after LIMIT seconds is cancelled
    (``anyio.move_on_after``) and answered 504. A pure ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` runs the endpoint in a task of its own, out of reach of
    a cancel scope around ``call_next``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/stream":
            await self.app(scope, receive, send)
            return
        started = False

        async def note_start(message):
            nonlocal started
            started = True
            await send(message)

        with anyio.move_on_after(LIMIT):
            await self.app(scope, receive, note_start)
            return
        if not started:
            await PlainTextResponse("timed out", status_code=504)(scope, receive, send)


app = FastAPI()
app.add_middleware(TimeLimit)


@app.get("/crunch")
def crunch(seconds: float = 30.0):
    slow(seconds)
    return PlainTextResponse("finished")


def slow_dependency():
    slow()
    return "finished"


@app.get("/dependency")
def with_dependency(value: str = Depends(slow_dependency)):
    return PlainTextResponse(value)


def lines():
    yield b"first\n"
    slow()
    yield b"never sent\n"


@app.get("/stream")
def stream():
    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/fast")
def fast():
    return PlainTextResponse("fast")


@app.get("/stats")
async def stats():
    with counts_lock:
        return JSONResponse(dict(counts))
