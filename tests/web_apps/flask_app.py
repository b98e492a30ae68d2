"""The Flask example of docs/web.md: a 0.5 s limit, /report given 3 s, /short 0.3 s, and an
error handler for Exception (which must not catch the expiry)."""

from __future__ import annotations

import threading
import time

from flask import Flask

from hardstop.wsgi import TimeLimit, time_limit

app = Flask(__name__)
finally_ran = 0


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@app.errorhandler(Exception)
def error_page(error):
    return f"error page: {error!r}", 500


@app.get("/slow")
def slow():
    global finally_ran
    try:
        threading.Event().wait(30)
    finally:
        finally_ran += 1
    return "finished"


@app.get("/report")
@time_limit(3)
def report():
    spin(0.7)
    return "report"


@app.get("/short")
@time_limit(0.3)
def short():
    threading.Event().wait(30)
    return "finished"


@app.get("/stats")
def stats():
    return {"finally_ran": finally_ran}


app.wsgi_app = TimeLimit(app.wsgi_app, 0.5)
