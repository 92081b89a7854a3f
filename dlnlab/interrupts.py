"""A second Ctrl-C that stops a run at once, even inside a long block of compiled steps.

Python runs a signal handler only between bytecodes: while the fused engine's numba loop (or any
long C call) runs a block, a SIGINT is only noted, and a second one is merged into the first. So the
task's handler (dlnlab.task, "stop at the end of this block") cannot make the second Ctrl-C stop
anything until the block ends, minutes later for a long block. `one_shot` asks the kernel to
restore the default action itself when it delivers the first signal (SA_RESETHAND): the first
Ctrl-C still reaches the task's handler, the second ends the process at once (killed by SIGINT:
status 130 in a shell). Linux only (glibc and musl share the layout of struct sigaction); elsewhere
it does nothing and the second Ctrl-C acts at the end of the block.
"""

import ctypes
import signal
import sys

SA_RESETHAND = 0x80000000  # Linux: reset to SIG_DFL on delivery
SA_ONSTACK = 0x08000000  # Linux: CPython's handlers set it (the check that the layout is right)
FLAGS_OFFSET = 8 + 128  # struct sigaction: the handler, sigset_t (1024 bits), then sa_flags


def one_shot(sig: int = signal.SIGINT) -> bool:
    """Make the handler now installed for `sig` (by signal.signal) one-shot at the OS level.
    Returns whether it did (False off 64-bit Linux, or if the struct is not as expected)."""
    if sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        action = (ctypes.c_char * 256)()  # room for struct sigaction (152 bytes)
        if libc.sigaction(int(sig), None, action) != 0:
            return False
        flags = ctypes.c_uint.from_buffer(action, FLAGS_OFFSET)
        handler = ctypes.c_void_p.from_buffer(action, 0).value
        if not handler or handler == signal.SIG_IGN or not flags.value & SA_ONSTACK:
            return False  # not a CPython handler: the layout is not the one assumed
        flags.value |= SA_RESETHAND
        return libc.sigaction(int(sig), action, None) == 0
    except (OSError, AttributeError, ValueError):
        return False
