"""``hardstop.dramatiq``: a drop-in for dramatiq's ``TimeLimit`` middleware.

dramatiq's own ``TimeLimit`` polls its deadlines from a thread once a second and
raises ``TimeLimitExceeded`` through the bare ``ctypes`` call: late by up to its
interval, never waking a waiting actor, and able to land in the next message
when it fires just as one ends. This one takes the same options (``time_limit``
and ``interval`` in milliseconds; ``time_limit`` per actor and per message) and
enters a ``hardstop.deadline`` for each message, on behalf of the worker thread's
``process_message`` frame, from ``before_process_message`` to
``after_process_message``/``after_skip_message``: dramatiq's own
``TimeLimitExceeded`` is raised in the actor on time (a wait hardstop can end is
woken), and leaving the scope withdraws it in one step under the GIL, so it never
reaches the next message. Under gevent it leaves the work to dramatiq's own.

Put it last in the broker's middleware, so that its ``after_`` hooks run first
(dramatiq runs them in reverse) and the limit ends with the actor::

    middleware = [m() for m in dramatiq.middleware.default_middleware if m is not dramatiq.middleware.TimeLimit]
    broker = RedisBroker(url=..., middleware=[*middleware, hardstop.dramatiq.TimeLimit()])
"""

from __future__ import annotations

import math
import sys
import threading
import types
from typing import Any

try:
    # Not installed where CI runs mypy: no types to check against there.
    import dramatiq.middleware.time_limit as _dramatiq_time_limit  # type: ignore[import-not-found, unused-ignore]
    from dramatiq.middleware.threading import is_gevent_active  # type: ignore[import-not-found, unused-ignore]
    from dramatiq.worker import _WorkerThread  # type: ignore[import-not-found, unused-ignore]
except ImportError as error:
    raise ImportError(
        "hardstop.dramatiq needs dramatiq, which is not installed: "
        "install it with pip install 'hardstop-threads[dramatiq]'."
    ) from error

from hardstop._deadline import deadline
from hardstop._hardstop import Deadline

TimeLimitExceeded = _dramatiq_time_limit.TimeLimitExceeded

_PROCESS_MESSAGE = _WorkerThread.process_message.__code__


def _process_message_frame() -> types.FrameType:
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code is not _PROCESS_MESSAGE:
        frame = frame.f_back
    if frame is None:
        raise RuntimeError(
            "hardstop.dramatiq.TimeLimit runs in a dramatiq worker thread: before_process_message "
            "was called outside dramatiq's Worker.process_message."
        )
    return frame


class TimeLimit(_dramatiq_time_limit.TimeLimit):  # type: ignore[misc, unused-ignore]
    """dramatiq's ``TimeLimit``, enforced by a ``hardstop.deadline`` per message."""

    def __init__(self, *, time_limit: float = 600000, interval: int = 1000) -> None:
        super().__init__(time_limit=time_limit, interval=interval)
        self._scopes = threading.local()  # each worker thread's open scope

    def after_process_boot(self, broker: Any) -> None:
        if is_gevent_active():
            super().after_process_boot(broker)  # greenlets: dramatiq's own timers

    def before_process_message(self, broker: Any, message: Any) -> None:
        if is_gevent_active():
            super().before_process_message(broker, message)
            return None
        actor = broker.get_actor(message.actor_name)
        limit = message.options.get("time_limit") or actor.options.get("time_limit", self.time_limit)
        seconds = limit / 1000 if limit is not None else math.inf
        exceeded = TimeLimitExceeded(f"The actor {message.actor_name} ran past its time limit of {limit} ms.")
        scope = deadline(seconds, raises=exceeded)
        scope.label = f"the dramatiq message {message.message_id}"
        scope.enter_for(_process_message_frame())
        self._scopes.scope = scope
        return None

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if is_gevent_active():
            super().after_process_message(broker, message, result=result, exception=exception)
            return None
        scope: Deadline | None = getattr(self._scopes, "scope", None)
        if scope is None:
            return None
        self._scopes.scope = None
        scope.__exit__(None, None, None)
        if scope.expired:
            self.logger.warning("Time limit exceeded for message %s: TimeLimitExceeded was raised in it.", message)
        return None

    after_skip_message = after_process_message


__all__ = ["TimeLimit", "TimeLimitExceeded"]
