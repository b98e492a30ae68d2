"""``shielded``: the decorator form of ``hardstop.shield()``.

The shield itself lives in the extension: entering it must take back an
interrupt armed a moment before, in one step that no other thread can split.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from hardstop._hardstop import shield

# typing costs more to import than all of hardstop: these exist for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")


def shielded(func: Callable[P, R]) -> Callable[P, R]:
    """Run every call of ``func`` inside ``hardstop.shield()``."""
    if not callable(func):
        raise TypeError(f"@hardstop.shielded decorates a function, not {type(func).__name__} {func!r}.")

    @functools.wraps(func)
    def shielded_call(*args: P.args, **kwargs: P.kwargs) -> R:
        with shield():
            return func(*args, **kwargs)

    return shielded_call
