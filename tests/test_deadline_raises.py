"""The scope API integrations need (#19): ``deadline(..., raises=)`` raises a chosen
exception inside the block, once; ``Deadline.enter_for(frame)`` enters a scope on
behalf of a caller's frame, as a framework's context manager does."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

import hardstop
from conftest import WAIT, assert_nothing_pending, spin


class Chosen(Exception):
    """What a framework raises at its time limit (Celery's SoftTimeLimitExceeded, rq's JobTimeoutException)."""


def spin_for(seconds: float) -> None:
    spin(threading.Event(), seconds)


def test_raises_a_chosen_class_inside_the_block_and_it_leaves_as_itself():
    with pytest.raises(Chosen) as caught:
        with hardstop.deadline(0.05, raises=Chosen):
            spin_for(WAIT)
    assert type(caught.value) is Chosen
    assert_nothing_pending(threading.get_ident())


def test_raises_a_chosen_instance_as_that_very_object():
    chosen = Chosen("over the limit")
    with pytest.raises(Chosen) as caught:
        with hardstop.deadline_at(time.monotonic() + 0.05, raises=chosen):
            spin_for(WAIT)
    assert caught.value is chosen


def test_a_chosen_exception_is_raised_once_so_the_block_can_handle_it():
    caught, went_on = [], []
    with hardstop.deadline(0.05, raises=Chosen) as scope:
        try:
            spin_for(WAIT)
        except Chosen as error:
            caught.append(error)
        went_on.append(spin_for(0.3))  # a default deadline would fire again within 10 ms
    assert len(caught) == 1 and went_on == [None]
    assert scope.expired


def test_an_outer_deadline_ends_the_handler_of_a_chosen_exception():
    """A hard limit ends a soft limit's clean-up: the handler of a chosen exception is
    the block's own code, not protected as the handler of an interrupt is."""
    handled_to_the_end = []
    with pytest.raises(hardstop.DeadlineExceeded):
        with hardstop.deadline(0.3):
            with hardstop.deadline(0.05, raises=Chosen):
                try:
                    spin_for(WAIT)
                except Chosen:
                    spin_for(WAIT)  # a clean-up that runs too long
                    handled_to_the_end.append(True)
    assert handled_to_the_end == []


def test_the_default_expiry_fires_again_when_caught():
    """The contrast: without raises=, a swallowed expiry is raised again."""
    caught = 0
    with pytest.raises(hardstop.DeadlineExceeded), hardstop.deadline(0.05):
        try:
            spin_for(WAIT)
        except BaseException:  # noqa: BLE001 - swallowing it is the point
            caught += 1
        spin_for(WAIT)
    assert caught == 1


def test_expire_raises_the_chosen_exception_in_a_woken_wait():
    entered, outcome = threading.Event(), []
    scopes: list[hardstop.Deadline] = []

    def body() -> None:
        try:
            with hardstop.deadline(WAIT * 10, raises=Chosen("stopped")) as scope:
                scopes.append(scope)
                entered.set()
                threading.Event().wait(WAIT)
            outcome.append("waited")
        except Chosen as error:
            outcome.append(str(error))

    thread = threading.Thread(target=body)
    thread.start()
    assert entered.wait(WAIT)
    assert scopes[0].expire()
    thread.join(WAIT)
    assert outcome == ["stopped"]


def test_a_chosen_exception_swallowed_in_a_finalizer_is_raised_again(monkeypatch):
    swallowed: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_value))
    inside, leave = threading.Event(), threading.Event()

    class SpinsInDel:
        def __del__(self) -> None:
            inside.set()
            spin(leave)

    caught = []
    with hardstop.deadline(0.05, raises=Chosen) as scope:
        try:
            SpinsInDel()  # dropped at once: its __del__ spins until the expiry lands there
            spin_for(WAIT)
        except Chosen as error:
            caught.append(error)
    assert inside.is_set() and scope.expired
    assert len(caught) == 1  # the block got it after all
    assert swallowed == []  # a deadline's own expiry is not passed on to the hook


@pytest.mark.parametrize(
    ("raises", "message"),
    [
        (3, "hardstop.deadline() takes raises= as a BaseException subclass or instance, not int 3."),
        ("stop", "hardstop.deadline() takes raises= as a BaseException subclass or instance, not str 'stop'."),
        (int, "hardstop.deadline() takes raises= as a BaseException subclass or instance, not type <class 'int'>."),
    ],
)
def test_bad_raises_is_refused_with_a_clear_message(raises, message):
    with pytest.raises(TypeError) as refused:
        hardstop.deadline(1.0, raises=raises)
    assert str(refused.value) == message


def test_a_class_that_needs_arguments_is_refused_when_the_deadline_is_made():
    class NeedsOne(Exception):
        def __init__(self, reason: str) -> None:
            super().__init__(reason)

    with pytest.raises(
        TypeError, match=r"^.*NeedsOne cannot be created without arguments .*pass an instance instead\.$"
    ):
        hardstop.deadline_at(1.0, raises=NeedsOne)


class FrameworkLimit:
    """A framework's context manager (rq's death penalty) that enters a deadline in its __enter__."""

    def __init__(self, seconds: float, on_behalf: bool) -> None:
        self.scope = hardstop.deadline(seconds, raises=Chosen)
        self.on_behalf = on_behalf

    def __enter__(self) -> FrameworkLimit:
        if self.on_behalf:
            self.scope.enter_for(sys._getframe(1))
        else:
            self.scope.__enter__()  # the block would be this __enter__'s own, already returned
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.scope.__exit__(*exc_info)  # type: ignore[arg-type]


def test_a_scope_entered_for_the_callers_frame_fires_in_its_with_block():
    with pytest.raises(Chosen), FrameworkLimit(0.05, on_behalf=True) as limit:
        spin_for(WAIT)
    assert limit.scope.expired
    with_line = test_a_scope_entered_for_the_callers_frame_fires_in_its_with_block.__code__.co_firstlineno + 1
    assert limit.scope.where == f"{__file__}:{with_line}"
    assert_nothing_pending(threading.get_ident())


def test_a_scope_entered_in_another_objects_enter_never_fires():
    """Why enter_for() exists: the block of a scope entered by a plain __enter__ call is
    the frame that called it, which has returned, so the scope is taken as abandoned."""
    start = time.monotonic()
    with FrameworkLimit(0.05, on_behalf=False) as limit:
        spin_for(0.5)
    assert time.monotonic() - start >= 0.5
    assert not limit.scope.expired


def test_enter_for_refuses_what_is_not_a_frame():
    with pytest.raises(TypeError) as refused:
        hardstop.deadline(1.0).enter_for(5)
    assert str(refused.value) == "Deadline.enter_for() takes a frame (e.g. sys._getframe(1)), not int 5."


def test_enter_for_refuses_a_frame_not_running_in_the_calling_thread():
    frames: list[types.FrameType] = []
    thread = threading.Thread(target=lambda: frames.append(sys._getframe()))
    thread.start()
    thread.join(WAIT)
    scope = hardstop.deadline(1.0)
    with pytest.raises(
        ValueError, match=r"cannot be entered for <frame .*>: that frame is not running in the calling thread\.$"
    ):
        scope.enter_for(frames[0])
    with scope:  # nothing was entered: the scope can still be used
        pass


def test_a_chosen_exception_already_passed_is_raised_at_the_entry():
    chosen = Chosen("too late")
    ran = []
    with pytest.raises(Chosen) as caught:
        with hardstop.deadline_at(time.monotonic() - 1.0, raises=chosen):
            ran.append("body")
    assert caught.value is chosen
    assert ran == []
