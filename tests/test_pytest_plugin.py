"""hardstop's pytest plugin, run with pytester in a subprocess."""

from __future__ import annotations

import pytest

SLOW_TESTS = """
import threading, time, pytest

@pytest.mark.hardstop_timeout(0.2)
def test_stuck_in_a_loop():
    while True:
        sum(range(100))

@pytest.mark.hardstop_timeout(0.2)
def test_stuck_sleeping_in_the_main_thread():
    time.sleep(30)

torn_down = []

@pytest.fixture
def resource():
    yield "resource"
    torn_down.append("resource")

@pytest.mark.hardstop_timeout(0.2)
def test_stuck_with_a_fixture(resource):
    threading.Event().wait(30)

def test_after_them():
    assert torn_down == ["resource"]  # torn down as usual after the timeout
"""


def test_a_stuck_test_fails_with_its_stack_and_the_session_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:*",
            "*in test_stuck_in_a_loop*",  # the line varies: the call, or the loop's back-edge
        ]
    )
    result.stdout.fnmatch_lines(["*in test_stuck_sleeping_in_the_main_thread*", "*time.sleep(30)*"])
    assert "pluggy/" not in result.stdout.str()  # the stack starts at the test, not in pytest's machinery


def test_a_test_run_in_another_thread_is_stopped_there(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_threaded="""
        import threading, pytest

        @pytest.mark.hardstop_timeout(0.2)
        def test_waits():
            threading.Event().wait(30)
        """
    )
    pytester.makepyfile(
        run_in_thread="""
        import sys, threading, pytest
        codes = []
        args = ["-q", "-p", "no:cacheprovider", "test_threaded.py"]
        t = threading.Thread(target=lambda: codes.append(pytest.main(args)))
        t.start(); t.join(60)
        print("exit code", codes)
        """
    )
    result = pytester.runpython(pytester.path / "run_in_thread.py")
    result.stdout.fnmatch_lines(
        ["*hardstop_timeout: the test ran longer than 0.2 s*", "*1 failed*", "exit code *TESTS_FAILED*"]
    )


def test_the_command_line_and_ini_defaults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import time
        def test_slow():
            time.sleep(30)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hardstop-timeout=0.2")
    result.assert_outcomes(failed=1)
    pytester.makeini("[pytest]\nhardstop_timeout = 0.2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


def test_without_a_timeout_the_plugin_does_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import time
        def test_takes_a_while():
            time.sleep(0.3)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("value", ["'soon'", "0", "-1"])
def test_a_bad_timeout_is_a_usage_error_naming_it(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest
        @pytest.mark.hardstop_timeout({value})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*@pytest.mark.hardstop_timeout on test_bad.py::test_x takes a *number of seconds, not *"]
    )
