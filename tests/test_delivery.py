"""Delivery: the right exception, the very instance, matched by its real type."""

from __future__ import annotations

import errno
import sys
import threading

import pytest

import hardstop
from conftest import WAIT, Target, assert_nothing_pending, spin


class Custom(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code


class CustomBase(BaseException):
    pass


INSTANCES = [
    pytest.param(lambda: ValueError("prebuilt"), id="ValueError"),
    pytest.param(lambda: Custom(7, "needs args"), id="custom-with-required-args"),
    pytest.param(lambda: CustomBase("base"), id="BaseException-subclass"),
    pytest.param(lambda: OSError(errno.ENOENT, "no such file"), id="OSError-with-custom-__new__"),
    pytest.param(lambda: KeyError("k"), id="KeyError"),
    pytest.param(lambda: TimeoutError("slow"), id="TimeoutError"),
]


@pytest.mark.parametrize("make", INSTANCES)
def test_an_instance_is_raised_as_that_very_object_and_matched_by_its_type(make) -> None:
    exc = make()
    kind = type(exc)
    seen: dict[str, object] = {}

    def body() -> None:
        try:
            spin(target.stop)
        except kind as caught:  # `except TheType` must match
            seen["caught"] = caught
            seen["exc_info_value"] = sys.exc_info()[1]
            raise

    target = Target(body)
    with target:
        receipt = hardstop.interrupt(target.thread, exc)
        assert receipt.wait(WAIT)
        target.thread.join(WAIT)
    assert seen["caught"] is exc
    assert seen["exc_info_value"] is exc
    assert type(target.caught[0]) is kind  # `except BaseException` sees the real type
    assert target.caught[0] is exc
    assert receipt.exception is exc


class AllEqual(type):
    """A metaclass whose classes all compare (and hash) equal."""

    def __eq__(cls, other: object) -> bool:
        return isinstance(other, AllEqual)

    def __hash__(cls) -> int:
        return 0


def test_classes_that_compare_equal_get_carriers_of_their_own() -> None:
    # Before, on 3.10: carriers were looked up by equality, so the Second instance
    # was armed with First's carrier, and `except Second` missed it (issue 18, item 16).
    class First(Exception, metaclass=AllEqual):
        pass

    class Second(Exception, metaclass=AllEqual):
        pass

    caught: list[BaseException] = []

    def body() -> None:
        try:
            spin(target.stop)
        except Second as error:
            caught.append(error)

    target = Target(body, wanted=2)
    with target:
        assert hardstop.interrupt(target.thread, First("first")).wait(WAIT)
        second = Second("second")
        assert hardstop.interrupt(target.thread, second).wait(WAIT)
        target.thread.join(WAIT)
    assert len(target.caught) == 1 and type(target.caught[0]) is First  # `==` would call AllEqual.__eq__
    assert len(caught) == 1 and caught[0] is second
    assert hardstop._hardstop.carrier_for(Second).__base__ is Second


def test_a_class_is_instantiated_once_and_that_instance_is_raised() -> None:
    with Target() as target:
        receipt = hardstop.interrupt(target.thread, KeyError)
        assert receipt.wait(WAIT)
        target.thread.join(WAIT)
    assert type(receipt.exception) is KeyError
    assert target.caught == [receipt.exception]
    assert target.caught[0] is receipt.exception


def test_the_default_is_interrupted_and_except_exception_does_not_swallow_it() -> None:
    swallowed: list[BaseException] = []

    def body() -> None:
        try:
            spin(target.stop)
        except Exception as error:  # noqa: BLE001 - the point of the test
            swallowed.append(error)

    target = Target(body)
    with target:
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wait(WAIT)
        target.thread.join(WAIT)
    assert issubclass(hardstop.Interrupted, BaseException)
    assert not issubclass(hardstop.Interrupted, Exception)
    assert swallowed == []
    assert type(target.caught[0]) is hardstop.Interrupted


def test_a_bare_ident_works_like_the_thread() -> None:
    with Target() as target:
        receipt = hardstop.interrupt(target.thread.ident)
        assert receipt.wait(WAIT)
        assert receipt.thread is target.thread
        assert receipt.ident == target.thread.ident
    assert type(target.caught[0]) is hardstop.Interrupted


def test_the_calling_thread_can_interrupt_itself() -> None:
    stop = threading.Event()
    with pytest.raises(hardstop.Interrupted):
        hardstop.interrupt(threading.current_thread())
        spin(stop, limit=WAIT)
    assert_nothing_pending(threading.get_ident())


def test_the_main_thread_can_be_interrupted_by_another_thread() -> None:
    main = threading.main_thread()
    assert threading.current_thread() is main, "pytest runs tests in the main thread"
    stop = threading.Event()
    receipts: list[hardstop.Receipt] = []
    spinning = threading.Event()

    def interrupter() -> None:
        assert spinning.wait(WAIT)
        receipts.append(hardstop.interrupt(main, CustomBase("to main")))

    helper = threading.Thread(target=interrupter)
    helper.start()
    with pytest.raises(CustomBase, match="to main"):
        spinning.set()
        spin(stop, limit=WAIT)
    helper.join(WAIT)
    assert receipts[0].status == "delivered"
    assert_nothing_pending(main.ident)


def test_an_instance_can_be_raised_again_in_a_second_thread() -> None:
    exc = ValueError("shared")
    with Target() as first, Target() as second:
        assert hardstop.interrupt(first.thread, exc).wait(WAIT)
        assert hardstop.interrupt(second.thread, exc).wait(WAIT)
    assert first.caught[0] is exc
    assert second.caught[0] is exc
