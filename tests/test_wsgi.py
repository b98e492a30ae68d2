"""hardstop.wsgi.TimeLimit under waitress, started from its command line
(``python -m waitress``), with real HTTP requests (web_apps/wsgi_app.py,
served as ``wsgi_app:limited``: a 0.5 s limit)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import WAIT
from hardstop.wsgi import TimeLimit, time_limit

LIMIT = 0.5
MARGIN = WAIT / 2  # the slow handlers run 30 s: ending before LIMIT + MARGIN means stopped


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize(
    ("make", "kind", "message"),
    [
        (
            lambda: TimeLimit(app, "soon"),
            TypeError,
            "TimeLimit() takes a limit in seconds (a positive number, or None for no limit), not str 'soon'.",
        ),
        (
            lambda: TimeLimit(app, 0),
            ValueError,
            "TimeLimit() takes a limit in seconds (a positive number, or None for no limit), not 0.",
        ),
        (
            lambda: TimeLimit(app, -1.5),
            ValueError,
            "TimeLimit() takes a limit in seconds (a positive number, or None for no limit), not -1.5.",
        ),
        (
            lambda: TimeLimit(app, 1, report_after=-1),
            ValueError,
            "TimeLimit() takes a non-negative report_after in seconds, not -1.",
        ),
        (
            lambda: time_limit(True),
            TypeError,
            "time_limit() takes a limit in seconds (a positive number, or None for no limit), not bool True.",
        ),
    ],
)
def test_bad_limits_are_refused_naming_the_value(make, kind, message):
    with pytest.raises(kind) as caught:
        make()
    assert str(caught.value) == message


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("waitress", reason="waitress is in the test extra")
    from web_servers import waitress

    server = waitress(tmp_path_factory.mktemp("waitress"), "--threads=4")
    yield server
    server.stop()


def finally_count(server):
    status, body, _ = server.get("/stats")
    assert status == 200
    return json.loads(body)["finally_ran"]


@pytest.mark.parametrize("path", ["/spin", "/event"])
def test_a_slow_handler_gets_504_within_its_limit_and_its_finally_runs(server, path):
    before = finally_count(server)
    status, body, took = server.get(path)
    assert status == 504, body
    assert body == b"The request took longer than its time limit of 0.5 s and was stopped.\n"
    assert LIMIT <= took < LIMIT + MARGIN
    assert finally_count(server) == before + 1
    server.wait_for_log(f"GET {path} ran over its time limit of 0.5 s and was stopped in ")


def test_fast_requests_beside_a_slow_one_all_succeed(server):
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(server.get, "/spin")
        fast = [pool.submit(server.get, f"/fast?id={n}") for n in range(30)]
        assert slow.result()[0] == 504
        assert [f.result()[:2] for f in fast] == [(200, f"fast {n}".encode()) for n in range(30)]


def test_a_handler_blocked_in_c_is_reported_with_its_stack_and_stopped_when_the_call_returns(server):
    # Lock.acquire in a worker thread: no wake reaches it on any version.
    status, _, took = server.get("/lock?seconds=2")
    assert status == 504
    assert took >= 2
    log = server.wait_for_log(
        "GET /lock?seconds=2 is still running 0.5 s past its time limit of 0.5 s: it is blocked in a call into C "
        "(in <lambda>, "
    )
    assert "held.acquire(timeout=seconds_of(environ, 30))" in log.split("GET /lock?seconds=2 is still running")[1]
    # The expiry, pending while the acquire blocked, was raised at the handler's next check, which on
    # CPython 3.14 can be the `with finally_lock:` of its finally block as the lock is taken (where 3.14
    # calls no __exit__): the next request that takes that lock must still be answered.
    assert server.get("/spin?seconds=0.1", timeout=WAIT)[:2] == (200, b"finished")


@pytest.mark.parametrize("path", ["/stream-length", "/stream-chunked"])
def test_a_response_that_had_started_is_cut_off_not_passed_off_as_complete(server, path):
    before = finally_count(server)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT * 3)
    response = None
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        if response is not None:
            response.close()  # before its socket: finalized later (3.14t), it failed to flush a closed file
        connection.close()
    assert finally_count(server) == before + 1
    server.wait_for_log(f"GET {path} ran over its time limit of 0.5 s after its response had started")


def test_an_event_stream_body_is_not_limited(server):
    status, body, took = server.get("/events")
    assert status == 200
    assert body == b"".join(f"data: {n}\n\n".encode() for n in range(4))
    assert took > LIMIT  # it streamed past the limit


def test_the_environ_key_replaces_the_limit(server):
    status, body, _ = server.get("/env/spin?seconds=0.8")  # 1.5 s for /env/ paths
    assert (status, body) == (200, b"finished")
    status, _, took = server.get("/env/spin")
    assert status == 504
    assert 1.5 <= took < 1.5 + MARGIN


def test_time_limit_on_a_view_lengthens_or_shortens_its_limit(server):
    assert server.get("/long")[:2] == (200, b"finished")  # 1.5 s, under its own 5 s limit
    status, body, took = server.get("/short")
    assert status == 504
    assert body == b"The request took longer than its time limit of 0.3 s and was stopped.\n"
    assert 0.3 <= took < 0.3 + MARGIN


@pytest.mark.parametrize("framework", ["flask", "django"])
def test_the_framework_examples_of_the_docs(tmp_path, framework):
    pytest.importorskip("waitress", reason="waitress is in the test extra")
    pytest.importorskip(framework, reason=f"{framework} is in the test extra")
    from web_servers import waitress

    app = "flask_app:app" if framework == "flask" else "django_app:application"
    server = waitress(tmp_path, "--threads=2", app=app)
    try:
        status, body, took = server.get("/slow")
        assert status == 504, body  # not the framework's 500 page
        assert LIMIT <= took < LIMIT + MARGIN
        assert json.loads(server.get("/stats")[1]) == {"finally_ran": 1}
        assert server.get("/report")[:2] == (200, b"report")  # 0.7 s, under its own 3 s
        status, body, took = server.get("/short")
        assert status == 504, body  # its own limit passed, and the framework did not catch that either
        assert 0.3 <= took < 0.3 + MARGIN
    finally:
        server.stop()


STOPPED_RUN = """
import os
import threading
from pathlib import Path

import pytest

from web_servers import waitress


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = waitress(tmp_path_factory.mktemp("waitress"), "--threads=1")
    yield server
    server.stop()


def test_runs_until_stopped(server):
    Path(os.environ["SERVER_PID_FILE"]).write_text(str(server.process.pid))
    threading.Event().wait(60)  # the outer test sends SIGTERM meanwhile
"""


def test_a_test_run_stopped_with_sigterm_still_stops_the_server_it_started(tmp_path):
    """A run ended by SIGTERM (a CI time limit) tears its fixtures down, and so stops
    its ``python -m waitress`` by pid (by default SIGTERM ended pytest at once)."""
    pytest.importorskip("waitress", reason="waitress is in the test extra")
    (tmp_path / "test_stopped_run.py").write_text(STOPPED_RUN)
    pid_file = tmp_path / "server.pid"
    tests = Path(__file__).parent
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "test_stopped_run.py"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
            "SERVER_PID_FILE": str(pid_file),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server_pid = None
    try:
        end = time.monotonic() + WAIT * 3
        while not (pid_file.exists() and pid_file.read_text()) and run.poll() is None:
            assert time.monotonic() < end, "the inner run never started its server"
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=WAIT * 2)[0].decode(errors="replace")
        assert not _is_waitress(server_pid), f"the server (pid {server_pid}) outlived the run:\n{output}"
        assert run.returncode == 128 + signal.SIGTERM, output
        assert "stopped by signal 15" in output, output
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(WAIT)
        if server_pid is not None and _is_waitress(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # left behind: stopped here by its own pid


def _is_waitress(pid: int) -> bool:
    try:
        return b"waitress" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
