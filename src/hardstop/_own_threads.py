"""hardstop's own threads: the watchdog, the pump and the wake helpers.

Each is started here and remembered with what depends on it, so that
``kill()`` can refuse them by name: a "stop every leftover thread" loop over
``threading.enumerate()`` that stopped the watchdog would leave every later
deadline of the process silently unenforced.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

# thread -> what stops working without it (a sentence's ending)
_roles: weakref.WeakKeyDictionary[threading.Thread, str] = weakref.WeakKeyDictionary()


def start(target: Callable[..., object], name: str, role: str, args: tuple[object, ...] = ()) -> None:
    """Start a daemon thread of hardstop's; ``role`` says what depends on it."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    _roles[thread] = role
    thread.start()


def role_of(thread: threading.Thread) -> str | None:
    """What depends on ``thread`` if it is one of hardstop's own, else None."""
    return _roles.get(thread)
