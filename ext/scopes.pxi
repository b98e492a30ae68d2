# Scopes: shields and deadlines.
#
# Each thread numbers the scopes it enters (shields and deadlines), in order:
# a scope's position is its number, and an inner scope always has a greater one
# than the scopes around it. The thread keeps the positions of the shields it is
# in. A request carries a level: 0 for interrupt(), a deadline's own position for
# its expiry. A shield holds a request back when it sits inside the request's
# scope (its position > level):
# every shield holds interrupt() requests, and a deadline entered *inside* a
# shield still fires there (trio's rule: the shield protects its body from the
# outside, not from limits the body sets itself). Entering, leaving and firing
# are each one step here, under the GIL, so no request lands half way. The
# numbering and the open shields are kept in the thread's record.
#
# Numbers only grow, and each shield removes its own position when it is left,
# so scopes left out of order (a generator holding one, closed elsewhere) leave
# every other scope's position and protection as it was.


cdef inline bint _held(Receipt receipt) noexcept:
    """Does a shield of the target hold this request back?"""
    return receipt._record.shield_top > receipt._level


cdef void _hold_armed(_ThreadRecord record) except *:
    """A shield was just entered: take back what is armed for it, first in line."""
    cdef Receipt receipt = record.armed
    if receipt is None or not _held(receipt) or not _disarm_here(receipt._carrier):
        return
    _take_armed(record)
    _enqueue(record, receipt, True)
    if _SHARED_FLAG:
        _reset_shared_flag()


cdef void _release_held(_ThreadRecord record, bint may_start_pump=True) except *:
    """A scope was left: arm at once what its shield held back, if anything
    (and start the pump for the rest, unless the caller must start no thread)."""
    cdef PyThreadState *ts = NULL
    queue = record.queued
    if not queue or record.armed is not None:
        return
    free = [receipt for receipt in queue if not _held(receipt)]
    if not free:
        return
    # More than one, or a handler of ours still running: the pump takes over
    # after this one. Started first, since it is Python code and this thread
    # raises what gets armed at its next check; and with nothing armed for this
    # thread until it has started, since the pump arms what is free as soon as
    # it runs: raised here, inside Thread.start(), the request ended the start
    # early, the pump's claim was given up, and the requests behind it were
    # never armed (1 in 300 on 3.12, 1 in 8 on 3.14t).
    _stop_world()
    busy = _states_of(record, &ts) != 1 or _still_handling(record, ts) or hardstop_slot(ts) != NULL
    _start_world()
    if (len(free) > 1 or busy) and may_start_pump and _start_pump is not None and claim_pump():
        record.starting_pump = True
        try:
            _start_pump()
        finally:
            record.starting_pump = False
    _arm_next(record)


cdef class shield:
    """``with hardstop.shield():`` defer interrupts aimed at this thread.

    Requests made while the thread is inside (and one armed just before it got
    in) are held, in order, and the oldest is raised as the outermost shield is
    left. Shields nest. A deadline entered inside a shield still fires inside it.
    """
    cdef _ThreadRecord _record
    cdef long long _position
    cdef bint _inside

    def __enter__(self):
        with cython.critical_section(_CORE):
            return self._enter()

    cdef object _enter(self):
        cdef _ThreadRecord record
        if self._inside:
            raise RuntimeError("This hardstop.shield() is entered already: use one per with statement.")
        record = _own_record()
        self._record = record
        self._inside = True
        record.entered += 1
        self._position = record.entered
        if record.shields is None:
            record.shields = []
        record.shields.append(self._position)
        record.shield_top = self._position
        _hold_armed(record)
        return self

    def __exit__(self, kind, value, traceback):
        with cython.critical_section(_CORE):
            self._leave(True)
        return False

    cdef void _leave(self, bint may_start_pump) except *:
        cdef _ThreadRecord record = self._record
        if not self._inside:
            return
        self._inside = False
        self._record = None
        if record.shields and self._position in record.shields:   # not after a fork by another thread
            record.shields.remove(self._position)
        record.shield_top = record.shields[-1] if record.shields else 0
        _release_held(record, may_start_pump)

    def __repr__(self):
        return f"<hardstop.shield {'entered' if self._inside else 'not entered'}>"


def shielded_exit(self, kind, value, traceback):
    """An ``__exit__`` for hardstop's own Python context managers: runs
    ``self._leave()`` inside a shield. A Python ``__exit__`` can be interrupted
    at its first instruction (the check at a function's start), before it can
    enter a shield, and the block's clean-up is then skipped while the frame of
    its with statement goes on. This one is compiled, so it has no such
    instruction; what the shield held back is raised once it has returned."""
    with shield():
        self._leave()
    return False
