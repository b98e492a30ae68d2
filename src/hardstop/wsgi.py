"""``hardstop.wsgi.TimeLimit``: a time limit per request, in any threaded WSGI server.

Threaded servers (gunicorn's ``gthread``, waitress, ``wsgiref`` with
``ThreadingMixIn``, the Flask and Django development servers) cannot bound a
request: a slow handler keeps its thread for as long as it runs. This
middleware runs the application, and each step of its response body, inside a
``hardstop.deadline`` counted from when the request came in. When the limit
passes, the handler raises where it is (woken from waits hardstop can end), its
``finally:`` blocks run, and:

* if no byte of the response was handed to the server yet, the client gets
  ``504 Gateway Timeout``;
* if the response had started, the exception goes on to the server, which
  closes the connection (gunicorn and waitress do), so the client sees a
  truncated body, never one passed off as complete.

The deadline's exit withdraws anything still pending, so nothing lands in the
next request the thread serves. The expiry inside the handler is a
``BaseException``, so frameworks' ``except Exception`` error pages do not turn
it into a 500.

Per request, ``environ["hardstop.time_limit"]`` (seconds, or None for no limit)
set by the server or an outer middleware replaces the limit, and
``@time_limit(seconds)`` on a view replaces it while the request runs. A
response whose Content-Type is ``text/event-stream``, or whose view is
decorated ``@streaming``, or a ``wsgi.file_wrapper`` file, is limited only until
the application returns it: its body may stream for as long as it needs.

CPython raises only when the handler runs Python code: a thread blocked in C
(``time.sleep`` or socket I/O before 3.15, ``Lock.acquire``, a long C call)
stops when that call returns. Such a request is logged ``report_after`` seconds
past its limit, with its stack.
"""

from __future__ import annotations

import contextvars
import functools
import heapq
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol, TypeVar

from hardstop._deadline import deadline_at
from hardstop._errors import DeadlineExceeded, non_negative_seconds
from hardstop._hardstop import Deadline, current_frame

LIMIT_KEY = "hardstop.time_limit"  # environ: seconds (or None) replacing the middleware's limit
STREAMING_KEY = "hardstop.streaming"  # environ: a true value exempts the response body
STREAMING_TYPES = ("text/event-stream",)

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
F = TypeVar("F", bound=Callable[..., Any])


class Logger(Protocol):
    """What TimeLimit logs to: a ``logging.Logger``, or gunicorn's error log."""

    def error(self, msg: str, *args: object) -> None: ...


class _RequestTimedOut(BaseException):
    """Raised out of a ``@time_limit`` view when its limit passed: a BaseException,
    so that the framework's ``except Exception`` does not make it a 500."""

    def __init__(self, error: DeadlineExceeded) -> None:
        super().__init__(str(error))
        self.error = error


def _checked_limit(seconds: object, who: str) -> float | None:
    if seconds is None:
        return None
    what = f"{who} takes a limit in seconds (a positive number, or None for no limit)"
    limit = non_negative_seconds(seconds, what, what)
    if limit == 0:
        raise ValueError(f"{what}, not {seconds!r}.")
    return limit


class _Request:
    """One request going through the middleware, in the thread that serves it."""

    def __init__(self, middleware: TimeLimit, environ: dict[str, Any], start_response: StartResponse) -> None:
        self.middleware = middleware
        query = environ.get("QUERY_STRING")
        self.description = f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')}" + (
            f"?{query}" if query else ""
        )
        self.server_start_response = start_response
        self.began = time.monotonic()
        self.limit = middleware.seconds
        if LIMIT_KEY in environ:
            self.limit = _checked_limit(environ[LIMIT_KEY], f"environ[{LIMIT_KEY!r}]")
        self.thread = threading.current_thread()
        self.scope: Deadline | None = None  # the deadline running now, if any
        self.started = False  # start_response was called
        self.headers_sent = False  # a body chunk (or write()) went to the server
        self.streaming = False
        self.finished = False
        self.reported = False

    @property
    def end(self) -> float | None:
        return None if self.limit is None else self.began + self.limit

    def finish(self) -> None:
        """Done with the application: nothing left to limit or report. What the
        server handed over is let go (the overdue watch keeps this record a while)."""
        self.finished = True
        self.server_start_response = _gone

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None) -> Any:
        self.started = True
        for name, value in headers:
            if name.lower() == "content-type" and value.lower().startswith(self.middleware.streaming_types):
                self.streaming = True
        write = self.server_start_response(status, headers, exc_info)

        def write_and_note(data: bytes) -> object:
            self.headers_sent = True
            return write(data)

        return write_and_note

    def run_limited(self, step: Callable[[], Any]) -> Any:
        """``step()`` inside this request's deadline (if it has one); its expiry
        comes out as ``_RequestTimedOut`` (the application's own deadlines are
        left as they are)."""
        end = self.end
        if end is None:
            return step()
        scope = deadline_at(end)
        scope.label = f"the time limit of {self.description}"
        try:
            with scope:
                self.scope = scope
                try:
                    return step()
                finally:
                    self.scope = None
        except DeadlineExceeded as error:
            if error.scope is scope:
                raise _RequestTimedOut(error) from error
            raise

    def relimit(self, seconds: float | None) -> None:
        """A ``@time_limit`` view: the request's limit becomes ``seconds`` (from its start)."""
        scope = self.scope
        if scope is not None:
            scope.cancel()  # the view's own scope takes over (an expiry already raised stays raised)
        self.limit = seconds
        _overdue.watch(self)  # a shorter limit is reported sooner (a longer one is rescheduled)

    def timed_out(self, error: DeadlineExceeded) -> Iterable[bytes]:
        """The response after the limit passed: a 504 if nothing was sent yet;
        otherwise the error goes on to the server, which closes the connection."""
        where = _where_raised(error)
        if self.headers_sent:
            self.middleware.logger.error(
                "%s ran over its time limit of %s s after its response had started, and was stopped %s; "
                "the connection is closed so the client sees a truncated response",
                self.description,
                _seconds(self.limit),
                where,
            )
            raise error
        self.middleware.logger.error(
            "%s ran over its time limit of %s s and was stopped %s; answered 504 Gateway Timeout",
            self.description,
            _seconds(self.limit),
            where,
        )
        body = f"The request took longer than its time limit of {_seconds(self.limit)} s and was stopped.\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        self.server_start_response("504 Gateway Timeout", headers, sys.exc_info() if self.started else None)
        self.started = True
        return [body]


def _gone(status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None) -> Any:
    raise RuntimeError("start_response() called after the request was finished.")


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("hardstop.wsgi request", default=None)


class TimeLimit:
    """WSGI middleware: each request is stopped once it ran ``seconds``.

    ``seconds`` is a positive number, or None for no limit (requests can still
    be given one by ``environ["hardstop.time_limit"]`` or ``@time_limit``).
    ``report_after``: a request still running that many seconds past its limit
    (blocked in C, where CPython cannot raise) is logged with its stack.
    ``logger`` defaults to ``logging.getLogger("hardstop.wsgi")``.
    ``streaming_types``: Content-Types whose body is not limited.
    """

    def __init__(
        self,
        app: WSGIApp,
        seconds: float | None,
        *,
        report_after: float = 1.0,
        logger: Logger | None = None,
        streaming_types: tuple[str, ...] = STREAMING_TYPES,
    ) -> None:
        self.app = app
        self.seconds = _checked_limit(seconds, "TimeLimit()")
        self.report_after = non_negative_seconds(
            report_after,
            "TimeLimit() takes report_after in seconds",
            "TimeLimit() takes a non-negative report_after in seconds",
        )
        self.logger: Logger = logger if logger is not None else logging.getLogger("hardstop.wsgi")
        self.streaming_types = tuple(kind.lower() for kind in streaming_types)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(self, environ, start_response)
        token = _current.set(request)
        _overdue.watch(request)
        try:
            try:
                response: Iterable[bytes] = request.run_limited(lambda: self.app(environ, request.start_response))
            except _RequestTimedOut as stop:
                try:
                    return request.timed_out(stop.error)
                finally:
                    request.finish()
        except BaseException:
            request.finish()
            raise
        finally:
            _current.reset(token)
        file_wrapper = environ.get("wsgi.file_wrapper")
        is_file = isinstance(file_wrapper, type) and isinstance(response, file_wrapper)
        if is_file:
            request.finish()
            return response  # the server sends the file itself (sendfile): not limited
        if environ.get(STREAMING_KEY):
            request.streaming = True
        if request.streaming:
            request.finish()
        return _Body(request, response)


class _Body:
    """The application's response body, each step of it run inside the limit."""

    def __init__(self, request: _Request, response: Iterable[bytes]) -> None:
        self.request = request
        self.response = response
        self.chunks: Iterator[bytes] | None = None
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        request = self.request
        if self.done:
            raise StopIteration
        try:
            chunk: bytes = self._next() if request.streaming else request.run_limited(self._next)
        except _RequestTimedOut as stop:
            self.done = True
            try:
                self._close_quietly()
                (body,) = request.timed_out(stop.error)
            finally:
                request.finish()
            return body
        except BaseException:  # StopIteration included
            self.done = True
            request.finish()
            raise
        request.headers_sent = True  # the server writes the headers with the first chunk
        return chunk

    def _next(self) -> bytes:
        if self.chunks is None:
            self.chunks = iter(self.response)
        return next(self.chunks)

    def _close_quietly(self) -> None:
        close = getattr(self.response, "close", None)
        if close is not None:
            close()
            self.response = []

    def close(self) -> None:
        self.request.finish()
        close = getattr(self.response, "close", None)
        if close is not None:
            close()  # not limited: the application's clean-up runs to its end


def time_limit(seconds: float | None) -> Callable[[F], F]:
    """Decorator for a view: its request's limit becomes ``seconds`` (counted from
    when the request came in; None: no limit). Outside ``TimeLimit`` it does nothing."""
    limit = _checked_limit(seconds, "time_limit()")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited_view(*args: Any, **kwargs: Any) -> Any:
            request = _current.get()
            if request is None:
                return view(*args, **kwargs)
            request.relimit(limit)
            return request.run_limited(lambda: view(*args, **kwargs))

        return limited_view  # type: ignore[return-value]

    return decorate


def streaming(view: F) -> F:
    """Decorator for a view whose response streams: its body is not limited (the
    view itself still is, up to its return)."""

    @functools.wraps(view)
    def streaming_view(*args: Any, **kwargs: Any) -> Any:
        request = _current.get()
        if request is not None:
            request.streaming = True
        return view(*args, **kwargs)

    return streaming_view  # type: ignore[return-value]


def _seconds(limit: float | None) -> str:
    return f"{limit:g}"


def _where_raised(error: BaseException) -> str:
    """Where the expiry was raised inside the handler: its innermost frame."""
    inner = error.__cause__ or error.__context__ or error
    frames = traceback.extract_tb(inner.__traceback__)
    if not frames:
        return "before the application ran"
    last = frames[-1]
    return f"in {last.name}, {last.filename}:{last.lineno}"


class _OverdueRequests:
    """One thread per process logs requests still running ``report_after``
    seconds past their limit: blocked in C, where CPython cannot raise."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._due: list[tuple[float, int, _Request]] = []
        self._order = itertools.count()
        self._changed = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def watch(self, request: _Request) -> None:
        end = request.end
        if end is None:
            return
        with self._changed:
            if len(self._due) >= 1024 and len(self._due) % 1024 == 0:
                # Finished requests stay until they come up; drop them once they pile up.
                self._due = [entry for entry in self._due if not entry[2].finished]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (end + request.middleware.report_after, next(self._order), request))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hardstop-wsgi-overdue", daemon=True)
                self._thread.start()
            elif self._due[0][2] is request:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(wait)
                _, _, request = heapq.heappop(self._due)
            if not request.finished and not request.reported and request.end is not None:
                end = request.end + request.middleware.report_after
                if end > time.monotonic():  # a @time_limit view gave it longer meanwhile
                    with self._changed:
                        heapq.heappush(self._due, (end, next(self._order), request))
                    continue
                request.reported = True
                _report(request)


def _report(request: _Request) -> None:
    # Not sys._current_frames(): on 3.11 walking another thread's frames from it can crash
    # (ext/version_quirks.pxi, _COLLECTS_IN_ALLOCATION).
    frame = current_frame(request.thread.ident or 0)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no Python frame)\n"
    where = f" (in {frame.f_code.co_name}, {frame.f_code.co_filename}:{frame.f_lineno})" if frame is not None else ""
    request.middleware.logger.error(
        "%s is still running %s s past its time limit of %s s: it is blocked in a call into C%s, where CPython "
        "cannot raise in this thread; it is stopped when that call returns. Its stack:\n%s",
        request.description,
        _seconds(request.middleware.report_after),
        _seconds(request.limit),
        where,
        stack.rstrip("\n"),
    )


_overdue = _OverdueRequests()

__all__ = ["LIMIT_KEY", "STREAMING_KEY", "TimeLimit", "streaming", "time_limit"]
