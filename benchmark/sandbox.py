"""Keep a method's child process from writing outside its scratch folder.

The child runs the method's code, which the benchmark does not control. Two
things protect what is already recorded:

* the child is never told where the results live (its environment is
  scrubbed, its working directory is its own scratch folder), and
* on Linux with Landlock (kernel >= 5.13, unprivileged) the child restricts
  itself so that it may create, write, truncate or delete files only under
  its scratch folder, its exchange folder and the device nodes a method
  needs (``/dev/null``, ``/dev/zero``, the random devices, a terminal, GPU
  nodes): not ``/dev/shm`` as a whole, where other cells' exchange folders and
  the problems' input files live. Reads stay allowed: libraries must load.

Landlock is applied by the child to itself after the fork and cannot be lifted
again. Where it is not available the cell records ``sandbox = "none"``.
"""

from __future__ import annotations

import ctypes
import os
import sys

# Syscall numbers are the same on x86_64 and aarch64 (the generic table).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_O_PATH = 0o10000000

# Filesystem access rights (linux/landlock.h). Reads (READ_FILE, READ_DIR,
# EXECUTE) are deliberately not handled, so they stay allowed everywhere.
_WRITE_FILE = 1 << 1
_REMOVE_DIR, _REMOVE_FILE = 1 << 4, 1 << 5
_MAKE_CHAR, _MAKE_DIR, _MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = (1 << i for i in range(6, 13))
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


# Device nodes a method may open for writing (file rules); globs for the GPU nodes.
DEVICE_WRITES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts",
                 "/dev/nvidia*", "/dev/dri", "/dev/kfd")


def device_paths() -> list[str]:
    import glob

    return [p for pattern in DEVICE_WRITES for p in (glob.glob(pattern) if "*" in pattern else [pattern])]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock cannot be used."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def restrict_writes(writable: list[str]) -> str:
    """Allow file writes only beneath ``writable`` for this process and its children.

    Returns the sandbox in force: ``"landlock-abiN"``, or ``"none"`` when the
    kernel offers no Landlock (the child then runs unrestricted, and says so).
    """
    abi = landlock_abi()
    if abi < 1:
        return "none"
    handled = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK
               | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    libc = _libc()
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        return "none"
    try:
        for path in writable:
            if not os.path.exists(path):
                continue
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
            try:
                # a file (a device node) takes only the rights that apply to files
                allowed = handled if os.path.isdir(path) else handled & (_WRITE_FILE | _TRUNCATE)
                rule = _PathBeneathAttr(allowed, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return f"landlock-abi{abi}"
