"""hardstop.anyio.run_sync on anyio's asyncio and trio backends, and FastAPI sync
endpoints with the one-liner of docs/web.md, served by uvicorn (asyncio) and
hypercorn (trio) started from their command lines, beside stock anyio."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

import pytest

from conftest import WAIT, Gate

pytest.importorskip("anyio", reason="anyio is in the test extra")
import anyio
import anyio.to_thread

import hardstop.anyio

BACKENDS = ["asyncio", pytest.param("trio", marks=pytest.mark.skipif("not has_trio()"))]


def has_trio():
    try:
        import trio  # noqa: F401
    except ImportError:
        return False
    return True


class Work:
    """A sync function run in a worker: it says when it entered, when it left
    (its finally block), and whether it ran to its end."""

    def __init__(self, wait=None):
        self.entered = threading.Event()
        self.left = threading.Event()
        self.release = threading.Event()
        self.completed = False
        self._wait = wait

    def __call__(self):
        self.entered.set()
        try:
            if self._wait == "event":
                threading.Event().wait(WAIT * 3)
            else:
                spin_until(self.release, WAIT * 3)
            self.completed = True
        finally:
            self.left.set()


def spin_until(release, seconds):
    end = time.monotonic() + seconds
    while not release.is_set() and time.monotonic() < end:
        pass


async def run_until_entered(scope, entered, call):
    """Await ``call``; once the thread is inside the function, make ``scope`` (a
    ``move_on_after``) pass: its time is up now. (A fixed 0.2 s could pass before
    a loaded machine even started the thread.)"""

    async def expire_once_entered():
        while not entered.is_set():
            await anyio.sleep(0.01)
        scope.deadline = anyio.current_time()

    async with anyio.create_task_group() as group:
        group.start_soon(expire_once_entered)
        await call


def run(main, backend):
    return anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wait", ["spin", "event"])
def test_move_on_after_stops_the_thread_before_the_await_ends(backend, wait):
    work = Work(wait)

    async def main():
        with anyio.move_on_after(WAIT * 3) as scope:
            await run_until_entered(scope, work.entered, hardstop.anyio.run_sync(work))
        return scope.cancelled_caught, work.left.is_set()

    assert run(main, backend) == (True, True)  # the thread had left work when the await ended
    assert not work.completed


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_sibling_in_a_task_group_stops_the_thread(backend):
    work = Work()

    async def fail_once_started():
        while not work.entered.is_set():
            await anyio.sleep(0.01)
        raise ValueError("the sibling failed")

    async def main():
        async with anyio.create_task_group() as group:
            group.start_soon(hardstop.anyio.run_sync, work)
            group.start_soon(fail_once_started)

    with pytest.raises(BaseException) as caught:  # an exception group holding the ValueError
        run(main, backend)
    assert [str(error) for error in leaves(caught.value)] == ["the sibling failed"]
    assert work.left.wait(WAIT)
    assert not work.completed


def leaves(error):
    if hasattr(error, "exceptions"):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_exceptions_and_the_limiter_are_anyios(backend):
    def fail():
        raise KeyError("mine")

    async def main():
        limiter = anyio.CapacityLimiter(1)
        assert await hardstop.anyio.run_sync(divmod, 7, 2, limiter=limiter) == (3, 1)
        with pytest.raises(KeyError, match="mine"):
            await hardstop.anyio.run_sync(fail)
        work = Work()
        with anyio.move_on_after(WAIT * 3) as scope:
            await run_until_entered(scope, work.entered, hardstop.anyio.run_sync(work, limiter=limiter))
        assert limiter.borrowed_tokens == 0  # held until the thread had left, then given back
        return work.left.is_set()

    assert run(main, backend) is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_thread_blocked_in_c_is_warned_about_with_where_it_is(backend, monkeypatch):
    monkeypatch.setattr(hardstop.anyio, "STOP_TIMEOUT", 0.3)
    gate = Gate()  # Lock.acquire: no wake reaches it in a worker thread
    entered = threading.Event()

    def blocked():
        entered.set()
        gate.wait()

    async def main():
        with anyio.move_on_after(WAIT * 3) as scope:
            await run_until_entered(scope, entered, hardstop.anyio.run_sync(blocked))
        return scope.cancelled_caught

    with pytest.warns(RuntimeWarning) as warned:
        assert run(main, backend) is True
    gate.open()
    (warning,) = warned
    assert re.fullmatch(
        rf"hardstop\.anyio\.run_sync\(\): the thread is still running {re.escape(blocked.__module__)}\."
        rf"{re.escape(blocked.__qualname__)}\(\) "
        r"at \S+conftest\.py:\d+ in wait 0\.3 s after the call was cancelled "
        r"\(blocked where it cannot be woken\); it stops when that call returns",
        str(warning.message),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_stock_run_sync_abandons_the_thread_which_runs_on(backend):
    # The baseline: anyio's own run_sync ends the await and leaves func running.
    work = Work()

    async def main():
        with anyio.move_on_after(WAIT * 3) as scope:
            await run_until_entered(scope, work.entered, anyio.to_thread.run_sync(work, abandon_on_cancel=True))
        return work.entered.is_set(), work.left.is_set()

    try:
        assert run(main, backend) == (True, False)
    finally:
        work.release.set()
    assert work.left.wait(WAIT)
    assert work.completed


SERVERS = ["uvicorn", pytest.param("hypercorn", marks=pytest.mark.skipif("not has_trio()"))]


@pytest.fixture(scope="module", params=SERVERS)
def server(request, tmp_path_factory):
    for module in ("fastapi", request.param):
        pytest.importorskip(module, reason=f"{module} is in the test extra")
    from web_servers import asgi

    server = asgi(tmp_path_factory.mktemp(request.param), request.param)
    yield server
    server.stop()


def stats(server):
    status, body, _ = server.get("/stats")
    assert status == 200
    return json.loads(body)


@pytest.mark.parametrize("path", ["/crunch", "/dependency"])
def test_a_sync_endpoint_or_dependency_under_move_on_after_is_stopped(server, path):
    before = stats(server)
    status, body, took = server.get(path)
    assert (status, body) == (504, b"timed out")
    assert took < 1 + WAIT / 2  # it spins 30 s; the limit is 1 s
    after = stats(server)
    assert after["busy"] == 0  # the 504 was sent once the thread had left the endpoint
    assert after["finally_ran"] == before["finally_ran"] + 1
    assert after["completed"] == before["completed"]


def wait_for(condition):
    end = time.monotonic() + WAIT
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)


def test_a_sync_stream_is_stopped_when_the_client_disconnects(server):
    before = stats(server)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    connection.request("GET", "/stream")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read(6) == b"first\n"
    wait_for(lambda: stats(server)["busy"] == 1)  # the generator is computing its next line
    response.close()
    connection.close()
    wait_for(lambda: stats(server)["finally_ran"] > before["finally_ran"])
    after = stats(server)
    assert after["finally_ran"] == before["finally_ran"] + 1  # the generator was stopped in its thread
    assert after["busy"] == 0


def test_stock_anyio_keeps_the_thread_of_a_cancelled_sync_endpoint(tmp_path):
    # The baseline: without the one-liner, move_on_after cannot end the 1.5 s
    # endpoint: the request ends only once it ran to its end, with its 200.
    # (Under hypercorn's trio worker the cancellation then lands between the
    # response's start and its body, and hypercorn 0.18 exits on the protocol error.)
    kind = "uvicorn"
    for module in ("fastapi", kind):
        pytest.importorskip(module, reason=f"{module} is in the test extra")
    from web_servers import asgi

    server = asgi(tmp_path, kind, env={"HARDSTOP_STOCK": "1"})
    try:
        status, body, took = server.get("/crunch?seconds=1.5")
        assert (status, body) == (200, b"finished")
        assert took >= 1.5
        assert stats(server)["completed"] == 1
    finally:
        server.stop()


@pytest.mark.skipif("not has_trio()")
def test_hardstop_to_thread_under_the_trio_backend_points_to_run_sync():
    ran = threading.Event()

    async def main():
        await hardstop.to_thread(ran.set)

    with pytest.raises(RuntimeError) as caught:
        anyio.run(main, backend="trio")
    assert str(caught.value) == (
        "hardstop.to_thread() runs on asyncio's event loop, and this call runs under trio (anyio's trio backend "
        "is trio): use hardstop.anyio.run_sync(func, *args), which stops the thread on trio too."
    )
    assert not ran.is_set()


def test_hardstop_to_thread_outside_any_event_loop_says_so():
    coroutine = hardstop.to_thread(print)
    with pytest.raises(RuntimeError) as caught:
        coroutine.send(None)
    assert str(caught.value) == (
        "hardstop.to_thread() needs a running asyncio event loop, and none runs in this thread."
    )
