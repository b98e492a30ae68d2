"""hardstop's pytest plugin, run with pytester in a subprocess."""

from __future__ import annotations

import fnmatch
import sys

import pytest


@pytest.fixture(autouse=True)
def as_on_a_developers_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest prints its short summary lines whole when CI or BUILD_NUMBER is set, and
    these tests count lines of the inner runs' output: run those as they run locally."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


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


UNITTEST_TESTS = """
import threading, time, unittest, pytest

torn_down = []

class Stuck(unittest.TestCase):
    def tearDown(self):
        torn_down.append(self.id())

    @pytest.mark.hardstop_timeout(0.2)
    def test_in_the_method(self):
        threading.Event().wait(30)

    @pytest.mark.hardstop_timeout(0.2)
    def test_in_a_subtest_loop(self):
        for i in range(1000):
            with self.subTest(i=i):
                threading.Event().wait(0.01)

class TestPlain:
    @pytest.mark.hardstop_timeout(0.2)
    def test_a_method(self):
        threading.Event().wait(30)

def test_after_them():
    assert len(torn_down) == 2  # tearDown ran after each timeout
"""


def test_a_testcase_and_a_subtest_loop_fail_once_with_the_plugins_message(pytester: pytest.Pytester) -> None:
    """unittest catches every exception but KeyboardInterrupt, and the deadline
    fires again every 10 ms: the raw expiry must not be reported, nor a failure
    per later subtest."""
    pytester.makepyfile(test_unit=UNITTEST_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3, passed=1)
    output = result.stdout.str()
    assert output.count("hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:") == 3
    assert "SUBFAILED" not in output
    assert "Expired" not in output  # the raw expiry is not what is reported
    result.stdout.fnmatch_lines(
        [
            "*_ Stuck.test_in_a_subtest_loop _*",
            "hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:",
            '  File "*test_unit.py", line 17, in test_in_a_subtest_loop',
            "    threading.Event().wait(0.01)",
        ]
    )
    result.stdout.fnmatch_lines(['  File "*test_unit.py", line 11, in test_in_the_method'])
    result.stdout.fnmatch_lines(['  File "*test_unit.py", line 22, in test_a_method'])


ASYNC_UNITTEST_TESTS = """
import asyncio, threading, unittest, pytest

ended = []

class Stuck(unittest.IsolatedAsyncioTestCase):
    async def asyncTearDown(self):
        ended.append(self._testMethodName)

    @pytest.mark.hardstop_timeout(0.2)
    async def test_blocks_its_loop(self):
        threading.Event().wait(30)

    @pytest.mark.hardstop_timeout(0.2)
    async def test_spins(self):
        spin()

    @pytest.mark.hardstop_timeout(0.2)
    async def test_awaits(self):
        await asyncio.sleep(30)

def spin():
    while True:
        pass

def test_their_teardowns_ran():
    assert sorted(ended) == sorted(TESTS)
"""


@pytest.mark.parametrize(
    "tests",
    [
        pytest.param(["test_blocks_its_loop", "test_spins"], id="stopped in its own code"),
        pytest.param(
            ["test_awaits"],
            id="stopped while it awaits",
            marks=pytest.mark.skipif(
                sys.version_info < (3, 11),
                reason="unittest 3.10 reports an error only after tearDown, and its async runner runs "
                "asyncTearDown after the awaited call ends: the stop lands in the event loop and fires again",
            ),
        ),
    ],
)
def test_an_async_testcase_fails_once_with_the_plugins_message(pytester: pytest.Pytester, tests: list[str]) -> None:
    """An IsolatedAsyncioTestCase runs its test in an event loop: stopped in its own
    code, or in the loop while it awaits (the loop hands the expiry to unittest),
    it fails with the plugin's message, once, with the stack from the test down
    (not asyncio's runner), and asyncTearDown still runs."""
    pytester.makepyfile(test_async_unit=f"TESTS = {tests!r}\n" + ASYNC_UNITTEST_TESTS)
    selected = " or ".join([*tests, "test_their_teardowns_ran"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", selected)
    result.assert_outcomes(failed=len(tests), passed=1)
    output = result.stdout.str()
    assert output.count("hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:") == len(tests)
    # The raw expiry is not reported ("hardstop.Expired: the deadline ..."); asyncio's
    # debug log may name it in its slow-callback line, "exception=Expired(...)".
    assert "Expired:" not in output
    assert "During handling" not in output
    if "test_blocks_its_loop" in tests:
        result.stdout.fnmatch_lines(
            [
                "*_ Stuck.test_blocks_its_loop _*",
                "hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:",
                '  File "*test_async_unit.py", line 13, in test_blocks_its_loop',
            ],
            consecutive=True,
        )


def test_a_testcase_whose_teardown_or_cleanup_overruns_fails_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_parts="""
        import threading, unittest, pytest

        class SlowTearDown(unittest.TestCase):
            def tearDown(self):
                threading.Event().wait(30)

            @pytest.mark.hardstop_timeout(0.2)
            def test_quick(self):
                pass

        class SlowCleanup(unittest.TestCase):
            @pytest.mark.hardstop_timeout(0.2)
            def test_quick(self):
                self.addCleanup(threading.Event().wait, 30)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert output.count("hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:") == 2
    assert "Expired" not in output
    result.stdout.fnmatch_lines(['  File "*test_parts.py", line 5, in tearDown', "    threading.Event().wait(30)"])


@pytest.mark.skipif(int(pytest.__version__.split(".")[0]) < 9, reason="the subtests fixture is built in from pytest 9")
def test_a_loop_of_the_subtests_fixture_fails_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sub="""
        import threading, pytest

        @pytest.mark.hardstop_timeout(0.2)
        def test_loop(subtests):
            for i in range(1000):
                with subtests.test(i=i):
                    threading.Event().wait(0.01)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(failed=1)
    assert "SUBFAILED" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:", "*in test_loop"]
    )


def test_the_stack_is_the_tests_own(pytester: pytest.Pytester) -> None:
    """Not hardstop's signal handler below a main-thread sleep; not another
    plugin's hook wrapper (as pytest's capture) above the test."""
    pytester.makeconftest(
        """
        import time, pytest

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_call(item):
            yield
            time.sleep(0.5)  # as pytest's capture reading a lot of output: not the test's time
        """
    )
    pytester.makepyfile(
        test_sleeps="""
        import time, pytest

        @pytest.mark.hardstop_timeout(0.2)
        def test_sleeps():
            time.sleep(30)

        @pytest.mark.hardstop_timeout(0.2)
        def test_quick():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    # The test's frame is the only one shown: nothing of hardstop's below it (its
    # wake handler, compiled or not), nothing of the conftest's wrapper above it.
    lines = result.stdout.lines
    start = lines.index("hardstop_timeout: the test ran longer than 0.2 s and was stopped. It was here:")
    shown = lines[start + 1 : lines.index("", start)]
    frames = [line for line in shown if line.startswith("  File ")]
    assert len(frames) == 1, shown
    assert fnmatch.fnmatch(frames[0], '  File "*test_sleeps.py", line 5, in test_sleeps'), shown


def test_a_teardown_that_overruns_says_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_teardown="""
        import threading, pytest

        @pytest.fixture
        def slow_to_close():
            yield
            threading.Event().wait(30)

        @pytest.mark.hardstop_timeout(0.2)
        def test_quick(slow_to_close):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_quick*",
            "hardstop_timeout: the test's teardown ran longer than 0.2 s and was stopped. It was here:",
            "*in slow_to_close",
        ]
    )


@pytest.mark.parametrize("name", ["hardstop", "hardstop.pytest_plugin"])
def test_with_autoload_disabled_p_loads_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_plain="""
        import pytest, threading

        @pytest.mark.hardstop_timeout(0.2)
        def test_slow():
            threading.Event().wait(30)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", name)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*hardstop_timeout: the test ran longer than 0.2 s*"])


@pytest.mark.parametrize("value", ["'soon'", "0", "-1"])
def test_a_bad_marker_fails_that_test_only_when_it_runs(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest
        @pytest.mark.hardstop_timeout({value})
        def test_x():
            pass

        def test_y():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_x*",
            f"@pytest.mark.hardstop_timeout on test_bad.py::test_x takes a *number of seconds, not {value}.",
        ]
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "not test_x")
    result.assert_outcomes(passed=1)  # deselected: the session goes on
    assert result.ret == 0


@pytest.mark.parametrize(
    ("arguments", "ini", "message"),
    [
        (["--hardstop-timeout=0"], "", "--hardstop-timeout takes a positive number of seconds, not 0.0."),
        ([], "soon", "the hardstop_timeout ini option takes a number of seconds, not 'soon'."),
        ([], "-1", "the hardstop_timeout ini option takes a positive number of seconds, not '-1'."),
    ],
)
def test_a_bad_session_setting_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, arguments: list[str], ini: str, message: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\nhardstop_timeout = {ini}\n")
    pytester.makepyfile(test_plain="def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
