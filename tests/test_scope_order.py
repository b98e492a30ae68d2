"""Scopes left out of order (a generator holding one, closed somewhere else) leave
every other scope's position and protection as it was (issue 18, item 3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import hardstop
from conftest import WAIT, spin


def holding_a_deadline() -> Iterator[None]:
    with hardstop.deadline(60):
        yield


def test_a_deadline_left_out_of_order_inside_a_shield_does_not_stop_a_later_deadline_firing_there() -> None:
    held = holding_a_deadline()
    next(held)  # its deadline is open, entered before the shield
    with hardstop.shield():
        held.close()  # left inside the shield, out of order
        began = time.monotonic()
        with pytest.raises(hardstop.DeadlineExceeded):
            with hardstop.deadline(0.05):  # entered inside the shield: fires inside it
                threading.Event().wait(WAIT)
        assert time.monotonic() - began < WAIT


def test_a_shield_left_out_of_order_leaves_the_inner_one_still_holding() -> None:
    outer, inner = hardstop.shield(), hardstop.shield()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # out of order: the inner shield is still open
    receipt = hardstop.interrupt(threading.current_thread())
    spin(threading.Event(), 0.05)  # bytecode: a request that is armed would be raised here
    assert receipt.status == "deferred"
    with pytest.raises(hardstop.Interrupted):
        inner.__exit__(None, None, None)
        spin(threading.Event(), WAIT)
    assert receipt.status == "delivered"
