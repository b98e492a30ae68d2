"""``gunicorn -k hardstop.gunicorn.ThreadWorker --threads 8 app:app``.

gunicorn's ``gthread`` worker with a time limit per request. The limit is
gunicorn's own ``timeout`` setting (``-t``/``--timeout``, ``timeout = 30`` in
``gunicorn.conf.py``, ``GUNICORN_CMD_ARGS``; 0 for none): with the ``sync``
worker, a request running that long gets its whole worker killed by the
arbiter; with ``gthread`` the setting bounds nothing but the worker's main
loop. Here a request running that long is stopped in its thread
(``hardstop.wsgi.TimeLimit``): the client gets ``504 Gateway Timeout`` (or a
closed connection if its response had started), the access log records it as
any response, the error log says where the request was stopped, and the thread
serves the next request. The worker's heartbeat is unchanged.
"""

from __future__ import annotations

try:
    # gunicorn ships no type hints, and is not installed where CI runs mypy.
    from gunicorn.workers.gthread import ThreadWorker as _GthreadWorker  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError as error:
    raise ImportError(
        "hardstop.gunicorn needs gunicorn, which is not installed: "
        "install it with pip install 'hardstop-threads[gunicorn]'."
    ) from error

from typing import Any

from hardstop.wsgi import TimeLimit, WSGIApp


class ThreadWorker(_GthreadWorker):  # type: ignore[misc, unused-ignore]
    """The ``gthread`` worker; each request stopped after ``timeout`` seconds."""

    wsgi: WSGIApp

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = TimeLimit(self.wsgi, self.cfg.timeout or None, logger=self.log)

    def run(self) -> None:
        # gthread's main loop tells the arbiter it is alive once per wait for events,
        # which lasts up to 1 s, and the arbiter kills a worker silent for `timeout`
        # seconds: here also the request limit, so a short one (-t 1) lost healthy
        # workers, with their requests, on a loaded machine. Wait a quarter of it at most.
        limit = self.cfg.timeout
        if limit:
            select = self.poller.select
            longest = limit / 4

            def shorter_select(timeout: float | None = None) -> Any:
                return select(longest if timeout is None else min(timeout, longest))

            self.poller.select = shorter_select
        super().run()


__all__ = ["ThreadWorker"]
