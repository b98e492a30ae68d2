"""Sub-interpreters: hardstop is refused in one, and never raises inside one.

hardstop works in the main interpreter only: its extension keeps one state per
process and installs the wake signal, which only the main interpreter may do.
Importing it in a sub-interpreter raises an ImportError that says so, before
the extension is loaded there (otherwise Cython's single-interpreter check
would bind the extension to that sub-interpreter and lock the main one out).

The extension walks the thread states of the *calling* interpreter
(``PyInterpreterState_Get()``), as ``PyThreadState_SetAsyncExc`` does: a thread
of the main interpreter that runs code in a sub-interpreter (``run_string`` in a
thread) is armed on its main-interpreter thread state, which is not the one
running, so the exception waits until the thread is back in the main
interpreter; a thread started inside a sub-interpreter has no thread state in
the main one and is ``ThreadNotFound``.

Every scenario runs in a child process: a sub-interpreter that went wrong must
not take the test run with it. The private modules are ``_xxsubinterpreters``
(3.10-3.12) and ``_interpreters`` (3.13+); from 3.14 the public
``concurrent.interpreters`` creates isolated ones.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import WAIT

try:
    import _interpreters  # noqa: F401 - only whether it exists: 3.13+
except ImportError:
    try:
        import _xxsubinterpreters  # noqa: F401 - 3.10-3.12
    except ImportError:
        pytest.skip(
            f"CPython {sys.version_info.major}.{sys.version_info.minor} was built without sub-interpreters "
            "(no _interpreters or _xxsubinterpreters module)",
            allow_module_level=True,
        )

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
ISOLATED_FROM = (3, 12)  # own GIL and the multi-interpreter extension check; before, only shared-GIL ones
THREADS_FROM = (3, 12)  # 3.10/3.11 refuse to start threads in a sub-interpreter

# Run in the child before each scenario: how to make a sub-interpreter of a
# kind on every version, run code in it, and read what it reports through a
# pipe (file descriptors belong to the process, so both interpreters see them).
PRELUDE = """
import os, sys, threading

try:
    from concurrent import interpreters as public  # 3.14+
except ImportError:
    public = None
try:
    import _interpreters as low  # 3.13+
except ImportError:
    import _xxsubinterpreters as low  # 3.10-3.12


class Interp:
    def __init__(self, kind):
        self.public = public.create() if public is not None and kind == "isolated" else None
        if self.public is not None:
            return
        if sys.version_info >= (3, 13):
            self.id = low.create(kind)
        elif sys.version_info >= (3, 12):
            self.id = low.create(isolated=kind == "isolated")
        else:
            self.id = low.create()  # shared GIL: the only kind before 3.12

    def run(self, code):
        if self.public is not None:
            self.public.exec(code)  # raises ExecutionFailed
            return
        failed = low.run_string(self.id, code)  # 3.10-3.12 raise RunFailedError
        assert failed is None, failed  # 3.13+ return what the code raised

    def close(self):
        if self.public is not None:
            self.public.close()
        else:
            low.destroy(self.id)


class Channel:
    def __init__(self):
        self.r, self.w = os.pipe()
        self.lines = os.fdopen(self.r)

    def read(self):
        return self.lines.readline().strip()
"""

# Code for a sub-interpreter: report the thread's ident, wait for `go1`, run
# plenty of bytecode (every check of the eval breaker is a chance for a wrongly
# armed exception to land), report that, wait for `go2`, then report whether
# anything was raised. The loops live in functions of their own (conftest: the
# back-edge bug of 3.11-3.14 must not let an exception skip the try).
SPINNER = """
import _thread, os, select, time

def report(text):
    os.write(OUT, (text + "\\n").encode())

def wait_for(fd):
    while not select.select([fd], [], [], 0)[0]:
        time.sleep(0.0005)  # a system call: on 3.15 the wake signal ends it with EINTR

def run_bytecode():
    n = 0
    for _ in range(200000):
        n += 1
    return n

def body():
    report("started " + str(_thread.get_ident()))
    try:
        wait_for(GO1)
        run_bytecode()
        report("ran bytecode")
        wait_for(GO2)
        report("clean")
    except BaseException as error:
        report("caught " + type(error).__name__)
"""


def run_child(script: str, **names: object) -> list[str]:
    """Run PRELUDE, ``names`` (as constants) and ``script`` in a new interpreter
    process; return its stdout lines."""
    constants = "".join(f"{name} = {value!r}\n" for name, value in {"SPINNER": SPINNER, **names}.items())
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + constants + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=WAIT * 6,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


KINDS = [
    pytest.param("legacy", id="shared-GIL"),
    pytest.param(
        "isolated",
        id="isolated",
        marks=pytest.mark.skipif(
            sys.version_info < ISOLATED_FROM, reason=f"CPython {VERSION} has no isolated sub-interpreters (3.12+)"
        ),
    ),
]

REFUSAL = (
    "ImportError: hardstop cannot be imported in a sub-interpreter: its extension keeps one state per process "
    "and installs a signal handler, which only the main interpreter can do. Use it from the main interpreter "
    "(a thread running code in a sub-interpreter can be interrupted from there: the exception is raised once "
    "the thread is back in the main interpreter)."
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("main_first", [True, False], ids=["main-imported-it-first", "sub-imports-it-first"])
def test_importing_hardstop_in_a_sub_interpreter_is_refused_and_the_main_one_keeps_it(kind, main_first) -> None:
    """Before the refusal: a shared-GIL sub-interpreter importing first got a
    ValueError from signal.signal, after which the main interpreter could never
    import hardstop ("Interpreter change detected"); importing second it got
    Cython's message, which names neither hardstop nor sub-interpreters."""
    lines = run_child(
        """
        if MAIN_FIRST:
            import hardstop
        out = Channel()
        interp = Interp(KIND)
        interp.run(
            "import os\\n"
            "try:\\n"
            "    import hardstop\\n"
            "except BaseException as error:\\n"
            f"    os.write({out.w}, (type(error).__name__ + ': ' + str(error) + '\\\\n').encode())\\n"
            "else:\\n"
            f"    os.write({out.w}, b'imported\\\\n')\\n"
        )
        print(out.read())
        interp.run("import sys; assert 'hardstop._hardstop' not in sys.modules, 'the extension was loaded'")
        interp.close()

        import hardstop  # the main interpreter has it, and it works

        def sleeper():
            try:
                hardstop.sleep(60)
            except hardstop.Interrupted:
                print("main interpreter: interrupted")

        t = threading.Thread(target=sleeper)
        t.start()
        receipt = hardstop.interrupt(t)
        t.join(60)
        print(receipt.status)
        """,
        MAIN_FIRST=main_first,
        KIND=kind,
    )
    assert lines == [REFUSAL, "main interpreter: interrupted", "delivered"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_thread_inside_a_sub_interpreter_raises_the_interrupt_only_once_back_in_the_main_one(kind) -> None:
    """Armed on the thread's main-interpreter state while it runs bytecode in a
    sub-interpreter: nothing lands there; kill() says it cannot reach the
    thread; the exception is raised as run_string returns."""
    lines = run_child(
        """
        import hardstop
        from hardstop import _hardstop
        out, go1, go2 = Channel(), Channel(), Channel()
        interp = Interp(KIND)
        code = SPINNER.replace("OUT", str(out.w)).replace("GO1", str(go1.r)).replace("GO2", str(go2.r)) + "body()\\n"
        outcome = []

        def run_bytecode():  # a loop of its own: the back-edge bug of 3.11-3.14 must not skip the try
            for _ in range(100000):
                pass

        def worker():
            try:
                interp.run(code)
                outcome.append("returned")
                run_bytecode()  # in the main interpreter: it lands here at the latest
                outcome.append("ran on")
            except hardstop.Interrupted as error:
                outcome.append(error)

        w = threading.Thread(target=worker)
        w.start()
        started, ident = out.read().split()
        print(started, int(ident) == w.ident)  # the same OS thread: the same ident in both interpreters
        receipt = hardstop.interrupt(w)
        print("armed:", receipt.status, _hardstop.pending_count(w.ident))
        os.write(go1.w, b"x")
        print(out.read())  # ran bytecode, with the interrupt armed
        print("after:", receipt.status)
        result = hardstop.kill(w, timeout=0.2)
        print("kill:", result.stopped, "has not been raised" in result.reason, result.receipts[-1].status)
        print("withdrawn:", result.receipts[-1].cancel())
        os.write(go2.w, b"x")
        print(out.read())
        w.join(60)
        # Raised at the first check of the main interpreter's eval breaker after the
        # call: inside run() on most versions, after it on 3.14+ (whose Interpreter.exec
        # returns through instructions that do not check), never later than the loop.
        print("outcome:", outcome[-1] is receipt.exception, "ran on" not in outcome, receipt.status)
        print("left:", _hardstop.pending_count(w.ident))
        interp.close()
        """,
        KIND=kind,
    )
    assert lines == [
        "started True",
        "armed: pending 1",
        "ran bytecode",
        "after: pending",
        "kill: False True pending",
        "withdrawn: True",
        "clean",
        "outcome: True True delivered",
        "left: 0",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_deadline_around_sub_interpreter_code_fires_only_once_back_in_the_main_one(kind) -> None:
    lines = run_child(
        """
        import time
        import hardstop
        out, go1, go2 = Channel(), Channel(), Channel()
        interp = Interp(KIND)
        code = SPINNER.replace("OUT", str(out.w)).replace("GO1", str(go1.r)).replace("GO2", str(go2.r)) + "body()\\n"
        scopes, outcome = [], []

        def run_bytecode():  # a loop of its own: the back-edge bug of 3.11-3.14 must not skip the try
            for _ in range(100000):
                pass

        def worker():
            try:
                with hardstop.deadline(0.05) as scope:
                    scopes.append(scope)
                    interp.run(code)
                    # Python code back in the main interpreter, where the expiry lands at
                    # the latest (on 3.14+ Interpreter.exec returns through instructions
                    # that do not check; a block ending right there withdraws its expiry).
                    run_bytecode()
                    outcome.append("ran on")
            except hardstop.DeadlineExceeded as error:
                outcome.append(error.scope is scope)

        w = threading.Thread(target=worker)
        w.start()
        print(out.read().split()[0])
        end = time.monotonic() + 60
        while not scopes[0].expired and time.monotonic() < end:  # the watchdog has fired (armed) it
            time.sleep(0.01)
        print("expired:", scopes[0].expired)
        os.write(go1.w, b"x")
        print(out.read())
        os.write(go2.w, b"x")
        print(out.read())
        w.join(60)
        print("outcome:", outcome)
        interp.close()
        """,
        KIND=kind,
    )
    assert lines == ["started", "expired: True", "ran bytecode", "clean", "outcome: [True]"]


def test_the_main_thread_inside_a_sub_interpreter_raises_the_interrupt_once_back() -> None:
    """The main thread gets the wake signal while it runs a sub-interpreter's
    code: CPython runs Python signal handlers only in the main interpreter, so
    the exception is raised there, after run_string returns."""
    lines = run_child(
        """
        import hardstop
        out, go1, go2 = Channel(), Channel(), Channel()
        interp = Interp("legacy" if sys.version_info < (3, 12) else "isolated")
        code = SPINNER.replace("OUT", str(out.w)).replace("GO1", str(go1.r)).replace("GO2", str(go2.r)) + "body()\\n"
        main = threading.main_thread()
        receipts = []

        def interrupter():
            out.read()  # started
            receipt = hardstop.interrupt(main)
            receipts.append(receipt)
            seen.append(f"wake: {receipt.wake.startswith('SIGURG sent to the main thread')}")
            os.write(go1.w, b"x")
            seen.append(out.read())  # ran bytecode, with the interrupt armed and the signal sent
            seen.append(f"after: {receipt.status}")
            os.write(go2.w, b"x")
            seen.append(out.read())

        def run_bytecode():  # a loop of its own: the back-edge bug of 3.11-3.14 must not skip the try
            for _ in range(100000):
                pass

        seen = []
        helper = threading.Thread(target=interrupter)
        helper.start()
        try:
            interp.run(code)
            run_bytecode()
            raised = "not raised"
        except hardstop.Interrupted as error:
            raised = f"raised back in the main interpreter: {error is receipts[0].exception}"
        helper.join(60)
        print(*seen, raised, receipts[0].status, sep="\\n")
        interp.close()
        """
    )
    assert lines == [
        "wake: True",
        "ran bytecode",
        "after: pending",
        "clean",
        "raised back in the main interpreter: True",
        "delivered",
    ]


@pytest.mark.skipif(
    sys.version_info < THREADS_FROM, reason=f"CPython {VERSION} refuses to start threads in a sub-interpreter"
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_thread_started_in_a_sub_interpreter_is_not_found_and_never_armed(kind) -> None:
    lines = run_child(
        """
        import hardstop
        from hardstop import _hardstop
        out, go1, go2 = Channel(), Channel(), Channel()
        interp = Interp(KIND)
        code = SPINNER.replace("OUT", str(out.w)).replace("GO1", str(go1.r)).replace("GO2", str(go2.r))
        if sys.version_info >= (3, 13):
            # Joined with threading's join, which returns once the thread state is
            # deleted: _thread._count() drops before that, and destroying the
            # interpreter in between crashes the ending thread (CPython 3.14.7's
            # free-threaded build, GIL on or off, with or without hardstop: it locks
            # the freed interpreter's QSBR mutex; about 1 run in 40 under load).
            code += "import threading\\nthread = threading.Thread(target=body)\\nthread.start()\\nthread.join()\\n"
        else:  # 3.12: that join never returns in a shared-GIL sub-interpreter
            code += (
                "done = _thread.allocate_lock()\\n"
                "done.acquire()\\n"
                "def run():\\n"
                "    try:\\n"
                "        body()\\n"
                "    finally:\\n"
                "        done.release()\\n"
                "_thread.start_new_thread(run, ())\\n"
                "done.acquire()\\n"
                "while _thread._count():\\n"
                "    time.sleep(0.001)\\n"
            )
        runner = threading.Thread(target=interp.run, args=(code,))
        runner.start()
        ident = int(out.read().split()[1])
        print("a thread of the main interpreter:", ident in _hardstop.thread_idents())
        for exc in (hardstop.Interrupted, KeyError("k")):
            try:
                hardstop.interrupt(ident, exc)
            except hardstop.ThreadNotFound as error:
                print(str(error) == f"No live thread of this interpreter has ident {ident}.")
            print("left:", _hardstop.pending_count(ident), _hardstop.slot_is_empty(ident))
        os.write(go1.w, b"x")
        print(out.read())
        os.write(go2.w, b"x")
        print(out.read())
        runner.join(60)
        interp.close()
        """,
        KIND=kind,
    )
    assert lines == [
        "a thread of the main interpreter: False",
        "True",
        "left: 0 True",
        "True",
        "left: 0 True",
        "ran bytecode",
        "clean",
    ]
