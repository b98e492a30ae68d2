# hardstop.futures' task: what runs once per task, compiled. A tiny task's whole
# cost is this bookkeeping, and the executor's goal is the standard one's speed
# (issue 16: benchmarks/executor_throughput.py). What runs only for a task that
# is stopped or reported (stop(), the texts of the warnings) stays in Python, in
# hardstop.futures._Task, a subclass.

# concurrent.futures' own, looked up on first use: `import hardstop` imports none
# of the slow modules (tests/test_import.py), and the executor has imported it by then.
cdef object _InvalidStateError = None
cdef object _NO_LIMIT = _INF   # the seconds of a task without a timeout: one float object for all


cdef class ScopedTask:
    """Runs ``fn`` in a worker, inside a deadline scope another thread can expire
    (the base of ``hardstop.futures._Task``, which says more)."""
    cdef public object future
    cdef public object fn
    cdef public tuple args
    cdef public dict kwargs
    cdef public object context    # to_thread's copy of the caller's context variables, or None
    cdef public double timeout
    cdef public object on_exit    # called in the worker once fn is left, or None
    cdef public object known_to   # the executor's set of tasks, left once run() ends; or None
    cdef public bint started      # set_running_or_notify_cancel() let it run
    cdef public bint stop_requested   # stop() expired its scope (not its timeout)
    cdef public Deadline scope    # made as run() begins, kept afterwards
    cdef unsigned long _ident     # its worker's, while run() runs; 0 before and after
    # The code of the frame that called run() (the worker's loop): where() shows
    # that frame as "in no code of the user's" (fn is a C function).
    cdef public object runner_code

    def __init__(self, future, fn, tuple args, dict kwargs, double timeout, context=None, set known_to=None):
        self.future = future
        future._task = self
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.context = context
        self.timeout = timeout
        if known_to is not None:
            self.known_to = known_to
            known_to.add(self)

    @property
    def thread(self):
        """The thread running it, while run() runs; else None."""
        cdef unsigned long ident
        with cython.critical_section(self):   # (free-threaded: written by the worker)
            ident = self._ident
        return _active.get(ident) if ident else None

    def runs_here(self):
        """Is the calling thread the one running it?"""
        with cython.critical_section(self):
            return self._ident == PyThread_get_thread_ident()

    def run(self, _worker_context=None):
        """Run the task (the standard worker calls ``run()``, ``run(context)``
        from 3.14) and settle its future."""
        cdef PyFrameObject *caller = PyEval_GetFrame()
        # The scope is made, and known to stop(), before the future can read
        # RUNNING: cancel() calls stop() only on a running future, after taking
        # the future's lock that set it, and an expire() that comes before the
        # scope is entered makes it raise at its entry. So no lock of the task's own.
        cdef Deadline scope = _deadline_after(self.timeout, self.timeout if self.timeout != _INF else _NO_LIMIT)
        if self.timeout != _INF:
            scope.label = self.label()   # named in its DeadlineExceeded; stop() names the others
        self.scope = scope
        with cython.critical_section(self):
            self._ident = PyThread_get_thread_ident()
        if caller != NULL:
            self.runner_code = hardstop_frame_code(caller)
        try:
            if not self.future.set_running_or_notify_cancel():
                return
            self.started = True
            if self.context is not None:
                result = _call_in_scope(scope, self.context.run, (self.fn,) + self.args, self.kwargs)
            else:
                result = _call_in_scope(scope, self.fn, self.args, self.kwargs)
        except DeadlineExceeded as error:
            if error.scope is not scope or not self.stop_requested:
                self._settle(None, error)   # its timeout, or a deadline of its own
        except BaseException as error:   # handed to the future, as the standard executor does
            self._settle(None, error)
        else:
            self._settle(result, None)
        finally:
            with cython.critical_section(self):
                self._ident = 0
            self.future._task = None   # no cycle left behind
            if self.started and self.on_exit is not None:
                self.on_exit()
            if self.known_to is not None:
                self.known_to.discard(self)

    def label(self):
        """What its scope's DeadlineExceeded and warnings call it."""
        return f"the task {self.fn!r}"

    cdef void _settle(self, object result, object exception) except *:
        # Not under the future's lock: set_result() runs the done-callbacks after
        # releasing it, and a callback may wait for a thread that needs it.
        global _InvalidStateError
        if _InvalidStateError is None:
            from concurrent.futures import InvalidStateError
            _InvalidStateError = InvalidStateError
        try:
            if exception is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(exception)
        except _InvalidStateError:
            pass   # cancelled while it ran: the result is dropped
