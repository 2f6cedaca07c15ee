"""Keep a method's child process from reading the truth, writing outside its folders, or talking
to anything.

The child runs the method's code, which the benchmark does not control:

* it is never told where the data or the results live (the fork server is started without
  those variables, the child's working directory is its own scratch folder);
* on Linux with Landlock (kernel >= 5.13, unprivileged) the child restricts itself so that it
  may read only what running a method needs (:func:`readable_paths`: the Python installation,
  stbench's modules, system libraries, its own /proc entry, device nodes, its own files) and
  create, write, truncate or delete files only under its scratch folder, its exchange folder
  and the device nodes a method needs (``/dev/null``, the random devices, a terminal, GPU
  nodes): not ``/dev/shm``, where other cells' exchange folders and the problems' input files
  live;
* Landlock also denies it TCP (ABI 4) and any signal or abstract unix socket outside its own
  processes (ABI 6), and, from ABI 1, ptrace of any process outside its domain;
* :func:`enter_namespaces` gives it a network namespace (nothing to connect to) and a PID
  namespace (it sees only its own processes, and all of them die with its first one).

All are applied by the child to itself after the fork and cannot be lifted again. What was in
force is the cell's ``sandbox`` column (``landlock-abi7 r+w+tcp+signal, netns, pidns`` here;
``none`` where the kernel offers none of them).
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

# Filesystem access rights (linux/landlock.h).
_EXECUTE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 2, 1 << 3
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE_FILE = 1 << 1
_REMOVE_DIR, _REMOVE_FILE = 1 << 4, 1 << 5
_MAKE_CHAR, _MAKE_DIR, _MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = (1 << i for i in range(6, 13))
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),  # ABI 4
                ("scoped", ctypes.c_uint64)]  # ABI 6


_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


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


_CLONE_NEWNET, _CLONE_NEWUSER, _CLONE_NEWPID = 0x40000000, 0x10000000, 0x20000000


def _map_user_to_itself(uid: int, gid: int) -> None:
    """Inside a new user namespace: the same user, so the cell's own folders stay writable."""
    try:
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid} {gid} 1")
    except OSError:
        pass


def enter_namespaces() -> str:
    """Give the cell a network namespace (no interface but a downed loopback: no connection to a
    tracking server, another cell or the internet) and a PID namespace (it sees and can signal
    only its own processes, and every one of them, detached or not, dies when its first one
    does). As root a plain ``unshare``; otherwise inside a user namespace that maps this user to
    itself. Returns what is in force: "netns, pidns", "netns", or "" where the kernel refuses.

    A PID namespace applies to the children of the process that creates it, so with one this
    *forks*: the caller returns in the child, process 1 of the new namespace; the original
    process waits for it and exits with its status (it never returns)."""
    if not sys.platform.startswith("linux"):
        return ""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    for flags in (_CLONE_NEWNET | _CLONE_NEWPID, _CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWPID,
                  _CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            break
    else:
        return ""
    if flags & _CLONE_NEWUSER:
        _map_user_to_itself(uid, gid)
    if not flags & _CLONE_NEWPID:
        return "netns"
    pid = os.fork()
    if pid == 0:
        return "netns, pidns"
    import signal

    while True:  # the waiting parent: it holds no method code and exits as its child did
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def plugin_paths() -> list[str]:
    """Where the installed ``stbench.methods`` plugins live, found without importing them: the
    folder of each one's distribution metadata and its top-level package (or module file)."""
    import importlib.util
    from importlib.metadata import entry_points

    paths = set()
    for ep in entry_points(group="stbench.methods"):
        try:
            if ep.dist is not None:
                paths.add(str(ep.dist.locate_file("")))
            spec = importlib.util.find_spec(ep.module.split(".")[0])  # a top-level name: nothing runs
            if spec is not None:
                paths.update(spec.submodule_search_locations or ([spec.origin] if spec.origin else []))
        except Exception:  # noqa: BLE001 - a broken plugin is reported where it is imported
            continue
    return sorted(os.path.realpath(p) for p in paths if p)


def readable_paths(extra: list[str] = ()) -> list[str]:
    """What a cell may read: the Python installation and its packages, stbench's own modules
    (not the folder around them, where a results folder may sit), the installed method plugins,
    system libraries and configuration, the kernel's view of this process and of the machine's
    CPUs and memory, the device nodes, and ``extra`` (the cell's scratch and exchange folders).
    Not: the data directories, results folders, home directories, /dev/shm, other processes."""
    import glob

    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = set(prefixes)
    for entry in sys.path:
        real = os.path.realpath(entry or ".")
        if os.path.isdir(real) and (any(real.startswith(p + os.sep) or real == p for p in prefixes)
                                    or os.path.basename(real) in ("site-packages", "dist-packages")):
            paths.add(real)
    root = os.path.dirname(os.path.realpath(__file__))  # the stbench package
    for name in os.listdir(root):
        full = os.path.join(root, name)
        if (os.path.isdir(full) and os.path.exists(os.path.join(full, "__init__.py"))) or \
                name.endswith((".py", ".json")):
            paths.add(full)
    paths.update(["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/sys", "/proc/self",
                  "/proc/thread-self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys",
                  "/proc/filesystems", "/proc/driver", "/dev/fd"])
    paths.update(device_paths())
    paths.update(glob.glob("/usr/local/cuda*"))
    paths.update(plugin_paths())
    paths.update(extra)
    return sorted(p for p in paths if os.path.exists(p))


def restrict_writes(writable: list[str], readable: list[str] | None = None) -> str:
    """Allow file writes only beneath ``writable`` and, when ``readable`` is given, reads only
    beneath ``writable`` and ``readable``, for this process and its children; where the kernel
    has them, no TCP and no signal or abstract socket outside the cell.

    Returns the sandbox in force: ``"landlock-abiN w"`` (writes restricted), ``"landlock-abiN
    r+w"`` (reads too), with ``+tcp`` and ``+signal`` for the network and scope rules, or
    ``"none"`` when the kernel offers no Landlock (the child then runs unrestricted, and says so).
    Landlock also keeps a cell from ptracing (or ``process_vm_readv``-ing) any process outside
    its domain, from ABI 1.
    """
    abi = landlock_abi()
    if abi < 1:
        return "none"
    write = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK
             | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)
    if abi >= 2:
        write |= _REFER
    if abi >= 3:
        write |= _TRUNCATE
    handled = write | (_READ if readable is not None else 0)
    file_rights = _WRITE_FILE | _TRUNCATE | _READ_FILE | _EXECUTE
    libc = _libc()
    # no TCP bind or connect (ABI 4; the network namespace already leaves nothing to reach, this
    # holds where a namespace cannot be made); no signal to, and no abstract unix socket of, any
    # process outside the cell's own (ABI 6): not the runner, the fork server or another cell
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0
    attr = _RulesetAttr(handled, net, scoped)
    size = ctypes.sizeof(attr) if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return "none"
    rules = [(p, handled) for p in writable] + [(p, handled & _READ) for p in (readable or [])]
    try:
        for path, rights in rules:
            if not os.path.exists(path):
                continue
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
            try:
                # a file (a device node, one input file) takes only the rights that apply to files
                allowed = rights if os.path.isdir(path) else rights & file_rights
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
    rights = ("r+w" if readable is not None else "w") + ("+tcp" if net else "") + ("+signal" if scoped else "")
    return f"landlock-abi{abi} {rights}"
