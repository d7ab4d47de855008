"""Do one independent piece of work in a forked process while this one does another.

Grading re-runs training twice (the broken run and the fixed one) and the two share nothing:
on a machine with a spare core they can run at the same time. Every run is seeded and
single-threaded, so a run done in a child process gives the same records, byte for byte, as
the same run done here (tested).

`start(fn, *args)` forks a child that calls `fn(*args)` and sends its return value back
through a pipe; `Handle.result()` waits for it (re-raising the child's exception, as
`ChildFailed` when it cannot be sent as it was). The child starts from a copy of this
process (torch and the scenarios already imported), so it pays no start-up.

`available()` says whether forking is safe and worth it here:
* Linux only: fork is the platform's process model there; macOS's system libraries are not
  fork-safe and Windows has no fork;
* at least two usable cores, one of them idle: the 1-minute load average below the cores
  less one half (with no core to spare, two processes only take turns, and each runs slower
  for the other's company: measured 1.3-1.5x the CPU time on a loaded 2-core machine);
* no other thread running: a thread caught holding a lock (an import, a plot being drawn) at
  the moment of the fork would leave the child waiting for it forever;
* not turned off: `DEBUGSIM_PARALLEL=0` in the environment, or `disable()`.
`DEBUGSIM_PARALLEL=1` forks whatever the load (two cores still needed); unset, the load
decides.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
import traceback
from typing import Any, Callable

_disabled = False


class ChildFailed(RuntimeError):
    """The child process died or raised something that could not be sent back as it was."""


def disable() -> None:
    """Do everything in this process from now on."""
    global _disabled
    _disabled = True


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def spare_core() -> bool:
    cores = usable_cores()
    return cores >= 2 and os.getloadavg()[0] < cores - 0.5


def available() -> bool:
    setting = os.environ.get("DEBUGSIM_PARALLEL", "")
    return (not _disabled and setting != "0" and sys.platform.startswith("linux")
            and threading.active_count() == 1
            and (spare_core() if setting != "1" else usable_cores() >= 2))


class Handle:
    """A piece of work running in a child process."""

    def __init__(self, process, connection) -> None:
        self._process, self._connection = process, connection

    def result(self) -> Any:
        """The child's return value (waits for it); its exception is raised here."""
        try:
            ok, value = _receive(self._connection)
        except EOFError:
            self._process.join()
            raise ChildFailed(f"the worker process ended without a result "
                              f"(exit code {self._process.exitcode})") from None
        finally:
            self._connection.close()
        self._process.join()
        if ok:
            return value
        raise value

    def send(self, *values) -> None:
        """The rest of the child's arguments (see `start(..., awaits_input=True)`)."""
        _send(self._connection, values)

    def cancel(self) -> None:
        """Stop the child if it is still running (after an error or Ctrl-C here)."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._connection.close()


def start(fn: Callable, *args, warm: Callable | None = None,
          awaits_input: bool = False) -> Handle:
    """Fork a child that runs fn(*args). With `warm`, the child calls it first (imports to
    get out of the way); with `awaits_input`, it then waits for `Handle.send(*values)` and
    runs fn(*args, *values). Call only when `available()`."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe(duplex=True)
    for stream in (sys.stdout, sys.stderr):   # else the child would print what is buffered
        stream.flush()
    process = context.Process(target=_child, args=(child_end, fn, args, warm, awaits_input),
                              daemon=True)
    process.start()
    child_end.close()
    return Handle(process, parent_end)


def _child(connection, fn: Callable, args, warm, awaits_input: bool) -> None:
    try:
        if warm is not None:
            warm()
        if awaits_input:
            args = (*args, *_receive(connection))
        reply = (True, fn(*args))
    except BaseException as error:          # Ctrl-C included: the parent decides what to do
        reply = (False, error)
    try:
        _send(connection, reply)
    except Exception:                       # the value or the exception would not pickle
        error = reply[1] if not reply[0] else None
        text = "".join(traceback.format_exception(error)) if error else "unpicklable result"
        _send(connection, (False, ChildFailed(text.strip().splitlines()[-1])))
    finally:
        connection.close()


# Values travel as plain pickles, copied into the message. A Connection's own send() pickles
# with multiprocessing's reducers, which torch extends to share a tensor's memory through a
# file descriptor served by the sender: gone once the child has exited.
def _send(connection, value) -> None:
    connection.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection):
    return pickle.loads(connection.recv_bytes())
