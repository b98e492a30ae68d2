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
# are each one step here, under the GIL, so no request lands half way.
#
# Numbers only grow, and each shield removes its own position when it is left,
# so scopes left out of order (a generator holding one, closed elsewhere) leave
# every other scope's position and protection as it was.

cdef class _ThreadScopes:
    cdef long long entered   # scopes this thread has entered: the last one's position
    cdef long long shield_top   # position of its innermost open shield; 0 when it is in none
    cdef list shields        # positions of its open shields, in the order entered

    def __cinit__(self):
        self.shields = []


cdef dict _scopes = {}    # ident -> _ThreadScopes


cdef _ThreadScopes _own_scopes(unsigned long ident):
    cdef _ThreadScopes scopes = _scopes.get(ident)
    if scopes is None:
        _watch(PyThreadState_Get(), ident)   # dropped with the thread
        scopes = _ThreadScopes.__new__(_ThreadScopes)
        _scopes[ident] = scopes
    return scopes


cdef bint _held(Receipt receipt):
    """Does a shield of the target hold this request back?"""
    cdef _ThreadScopes scopes = _scopes.get(receipt.ident)
    return scopes is not None and scopes.shield_top > receipt._level


cdef void _hold_armed(unsigned long ident) except *:
    """A shield was just entered: take back what is armed for it, first in line."""
    cdef Receipt receipt = _armed.get(ident)
    if receipt is None or not _held(receipt) or not _disarm(ident, receipt._carrier):
        return
    del _armed[ident]
    _queued.setdefault(ident, []).insert(0, receipt)
    if _SHARED_FLAG:
        _reset_shared_flag()


cdef void _release_held(unsigned long ident) except *:
    """A scope was left: arm at once what its shield held back, if anything."""
    cdef PyThreadState *ts = NULL
    queue = _queued.get(ident)
    if not queue or ident in _armed:
        return
    free = [receipt for receipt in queue if not _held(receipt)]
    if not free:
        return
    # More than one, or a handler of ours still running: the pump takes over
    # after this one. Started first, since it is Python code and this thread
    # raises what gets armed at its next check.
    busy = _count_states(ident, &ts) != 1 or _still_handling(ident, ts)
    if (len(free) > 1 or busy) and _start_pump is not None and claim_pump():
        _start_pump()
    _arm_next(ident)


cdef class shield:
    """``with hardstop.shield():`` defer interrupts aimed at this thread.

    Requests made while the thread is inside (and one armed just before it got
    in) are held, in order, and the oldest is raised as the outermost shield is
    left. Shields nest. A deadline entered inside a shield still fires inside it.
    """
    cdef unsigned long _ident
    cdef long long _position
    cdef bint _inside

    def __enter__(self):
        cdef unsigned long ident = PyThread_get_thread_ident()
        cdef _ThreadScopes scopes
        if self._inside:
            raise RuntimeError("This hardstop.shield() is entered already: use one per with statement.")
        scopes = _own_scopes(ident)
        self._ident = ident
        self._inside = True
        scopes.entered += 1
        self._position = scopes.entered
        scopes.shields.append(self._position)
        scopes.shield_top = self._position
        _hold_armed(ident)
        return self

    def __exit__(self, kind, value, traceback):
        cdef _ThreadScopes scopes
        if not self._inside:
            return False
        self._inside = False
        scopes = _scopes.get(self._ident)
        if scopes is not None:
            if self._position in scopes.shields:   # not after a fork by another thread
                scopes.shields.remove(self._position)
            scopes.shield_top = scopes.shields[-1] if scopes.shields else 0
            _release_held(self._ident)
        return False

    def __repr__(self):
        return f"<hardstop.shield {'entered' if self._inside else 'not entered'}>"
