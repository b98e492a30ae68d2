"""hardstop.gunicorn.ThreadWorker, started as users start it
(``python -m gunicorn -k hardstop.gunicorn.ThreadWorker --threads N -t 1``),
beside stock ``gthread``, with real HTTP requests (web_apps/wsgi_app.py)."""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import WAIT

pytest.importorskip("gunicorn", reason="gunicorn is in the test extra (POSIX only)")

from web_servers import gunicorn

LIMIT = 1.0  # gunicorn's --timeout takes whole seconds
MARGIN = WAIT / 2  # the slow handlers run 30 s: ending before LIMIT + MARGIN means stopped
WORKER = ("-k", "hardstop.gunicorn.ThreadWorker", "-t", "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = gunicorn(tmp_path_factory.mktemp("gunicorn"), *WORKER, "--threads", "8")
    yield server
    server.stop()


def stats(server):
    status, body, _ = server.get("/stats")
    assert status == 200
    return json.loads(body)


def test_a_slow_handler_gets_504_while_fast_ones_succeed_and_it_is_logged_gunicorns_way(server):
    with ThreadPoolExecutor(6) as pool:
        slow = pool.submit(server.get, "/spin")
        event = pool.submit(server.get, "/event")
        fast = [pool.submit(server.get, f"/fast?id={n}") for n in range(40)]
        assert [f.result()[:2] for f in fast] == [(200, f"fast {n}".encode()) for n in range(40)]
        for request in (slow, event):
            status, body, took = request.result()
            assert status == 504, body
            assert LIMIT <= took < LIMIT + MARGIN
    # The access log, as for any response: each line is written once its response is
    # sent, so the two 504s (due at the same moment) may be logged in either order.
    server.wait_for_log('"GET /spin HTTP/1.1" 504 ')
    log = server.wait_for_log('"GET /event HTTP/1.1" 504 ')
    assert re.search(r'"GET /spin HTTP/1\.1" 504 \d+', log)
    assert re.search(  # the error log, with gunicorn's time stamp, pid and level
        r"\[\d+\] \[ERROR\] GET /spin ran over its time limit of 1 s and was stopped in spin, \S+wsgi_app\.py:\d+; "
        r"answered 504 Gateway Timeout",
        log,
    )


def test_time_sleep_is_stopped_on_315_and_reported_with_its_stack_before(server):
    status, _, took = server.get("/sleep?seconds=2.5")
    assert status == 504
    if sys.version_info >= (3, 15):  # the wake signal ends a worker's sleep (gh-144748)
        assert took < 2.5
    else:
        assert took >= 2.5
        log = server.wait_for_log("[ERROR] GET /sleep?seconds=2.5 is still running 1 s past its time limit of 1 s")
        assert "time.sleep(seconds_of(environ, 30))" in log


def test_a_started_response_is_cut_off(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT * 3)
    try:
        connection.request("GET", "/stream-chunked")
        response = connection.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        connection.close()


def test_a_batch_where_one_in_five_times_out_leaks_no_thread_and_no_interrupt(server):
    before = stats(server)
    paths = [("/spin" if n % 5 == 0 else f"/fast?id={n}") for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(server.get, paths))
    for path, (status, body, _) in zip(paths, results, strict=True):
        if path == "/spin":
            assert status == 504, body
        else:  # an interrupt landing here would have made it a 504 or an error
            assert (status, body) == (200, f"fast {path.split('=')[1]}".encode())
    after = stats(server)
    assert after["busy"] == 0  # no thread still running a request that was answered
    assert after["finally_ran"] == before["finally_ran"] + 8
    pool_threads = [name for name in after["threads"] if name.startswith("ThreadPoolExecutor")]
    assert 1 <= len(pool_threads) <= 8


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        pytest.param(
            WORKER, (504, b"The request took longer than its time limit of 1 s and was stopped.\n"), id="hardstop"
        ),
        pytest.param(("-k", "gthread", "-t", "1"), (200, b"finished"), id="stock-gthread"),
    ],
)
def test_one_thread_slow_request_then_a_follow_up(tmp_path, worker, expected):
    # Stock gthread's --timeout bounds nothing but the worker's main loop: the 1.8 s
    # handler runs to its end, holding the only thread. Here it is stopped at 1 s.
    server = gunicorn(tmp_path, *worker, "--threads", "1")
    try:
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(server.get, "/spin?seconds=1.8")
            assert slow.result()[:2] == expected
        assert server.get("/fast?id=1")[:2] == (200, b"fast 1")  # the same thread, the only one
    finally:
        server.stop()
