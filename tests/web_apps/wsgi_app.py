"""The WSGI application the web tests serve (gunicorn, waitress), by path:

/fast?id=N        answers "fast N" after a little pure-Python work
/spin?seconds=S   a pure-Python loop for S seconds (30 by default), then "finished"
/event            Event.wait(30)
/sleep?seconds=S  time.sleep(S)
/lock?seconds=S   Lock.acquire(timeout=S) on a lock nobody releases (no wake reaches it)
/stream-length    sends 10 of the 100 bytes its Content-Length promises, then spins
/stream-chunked   sends a chunk (no Content-Length: chunked), then spins
/events           text/event-stream: 4 events 0.3 s apart (longer than the limit)
/long             @time_limit(5): spins 1.5 s, over the server's limit, then "finished"
/short            @time_limit(0.3): spins 30 s
/stats            JSON: live threads' names, slow handlers running now and that ran their finally

``limited`` is the application inside ``TimeLimit(0.5)``, with ``/env/...``
paths given a 1.5 s limit through the environ by an outer middleware.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs

from hardstop.wsgi import LIMIT_KEY, TimeLimit, time_limit

finally_ran = 0
busy = 0  # slow handlers running now
finally_lock = threading.Lock()


def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def seconds_of(environ, default):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return float(query.get("seconds", [default])[0])


def slow(work):
    """Run a slow handler; count its finally block (the tests check it ran)."""
    global finally_ran, busy
    with finally_lock:
        busy += 1
    try:
        return work()
    finally:
        with finally_lock:
            finally_ran += 1
            busy -= 1


def text(start_response, body, status="200 OK"):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def stream_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    yield b"x" * 10
    slow(lambda: spin(30))
    yield b"x" * 90


def stream_chunked(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    slow(lambda: spin(30))
    yield b"never sent"


def events(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    for n in range(4):
        spin(0.3)
        yield f"data: {n}\n\n".encode()


@time_limit(5)
def long_view(environ, start_response):
    spin(1.5)
    return text(start_response, "finished")


@time_limit(0.3)
def short_view(environ, start_response):
    slow(lambda: spin(30))
    return text(start_response, "finished")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/env/"):
        path = path[len("/env") :]
    if path == "/fast":
        spin(0.002)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        return text(start_response, f"fast {query.get('id', ['-'])[0]}")
    if path == "/spin":
        slow(lambda: spin(seconds_of(environ, 30)))
        return text(start_response, "finished")
    if path == "/event":
        slow(lambda: threading.Event().wait(30))
        return text(start_response, "finished")
    if path == "/sleep":
        slow(lambda: time.sleep(seconds_of(environ, 30)))
        return text(start_response, "finished")
    if path == "/lock":
        held = threading.Lock()
        held.acquire()
        slow(lambda: held.acquire(timeout=seconds_of(environ, 30)))
        return text(start_response, "finished")
    if path == "/stream-length":
        return stream_length(environ, start_response)
    if path == "/stream-chunked":
        return stream_chunked(environ, start_response)
    if path == "/events":
        return events(environ, start_response)
    if path == "/long":
        return long_view(environ, start_response)
    if path == "/short":
        return short_view(environ, start_response)
    if path == "/stats":
        names = [thread.name for thread in threading.enumerate()]
        stats = {"threads": names, "finally_ran": finally_ran, "busy": busy}
        return text(start_response, json.dumps(stats))
    return text(start_response, "not found", "404 Not Found")


def env_limits(app):
    """An outer middleware giving /env/... requests a 1.5 s limit through the environ."""

    def with_limits(environ, start_response):
        if environ["PATH_INFO"].startswith("/env/"):
            environ[LIMIT_KEY] = 1.5
        return app(environ, start_response)

    return with_limits


limited = env_limits(TimeLimit(app, 0.5, report_after=0.5))
