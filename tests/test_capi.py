"""The C API (hardstop.h, capsule) and the Cython declarations (hardstop.pxd),
used by extensions built here against the installed package."""

from __future__ import annotations

import os
import threading

import hardstop
from conftest import WAIT, Gate, Target, assert_nothing_pending, spin


def test_get_include_holds_the_header() -> None:
    assert os.path.isfile(os.path.join(hardstop.get_include(), "hardstop.h"))


def test_a_c_extension_interrupts_a_thread_without_holding_the_gil(native) -> None:
    testext, _ = native
    with Target() as target:
        rc, receipt = testext.interrupt_nogil(target.thread.ident, KeyError("from C"))
        assert rc == 0
        assert testext.wait_nogil(receipt, WAIT) == 1
        target.thread.join(WAIT)
    assert receipt.status == "delivered"
    assert target.caught == [receipt.exception]


def test_c_api_failures_give_codes_and_keep_the_exception_only_for_a_gil_holder(native) -> None:
    testext, _ = native
    gate = Gate()
    stop = threading.Event()
    with Target(lambda: (gate.wait(), spin(stop))) as target:
        rc, receipt = testext.interrupt_nogil(2**63 + 12345)
        assert (rc, receipt) == (testext.NOT_FOUND, None)
        try:
            testext.interrupt_gil(2**63 + 12345)
        except hardstop.ThreadNotFound as error:
            assert str(error) == f"No live thread of this interpreter has ident {2**63 + 12345}."
        else:
            raise AssertionError("the exception was not left set for a caller holding the GIL")
        rc, receipt = testext.interrupt_nogil(target.thread.ident)
        assert rc == 0
        assert testext.cancel_nogil(receipt) == 1
        assert receipt.status == "cancelled"
        assert testext.wait_nogil(receipt, 0.0) == 0
        assert_nothing_pending(target.thread.ident)
        gate.open()
        stop.set()
    assert target.caught == []


def test_a_cython_extension_uses_the_pxd(native) -> None:
    _, cyconsumer = native
    with Target() as target:
        rc, receipt, delivered = cyconsumer.interrupt_and_wait(target.thread.ident, WAIT)
        target.thread.join(WAIT)
    assert (rc, delivered) == (0, True)
    assert type(target.caught[0]) is hardstop.Interrupted
    assert target.caught[0] is receipt.exception
