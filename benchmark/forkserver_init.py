"""Imported once, by the fork server only (first in its preload list).

The fork server becomes a *child subreaper*: a process a method double-forks and detaches
(``setsid``) is re-parented to the fork server instead of to init when its parent exits, so the
runner can still find it and kill it when the cell ends (``isolation.reap_orphans``). The fork
server reaps such orphans itself; multiprocessing warns about each one, which is expected here.
"""

import ctypes
import sys
import warnings

PR_SET_CHILD_SUBREAPER = 36

if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
warnings.filterwarnings("ignore", message="forkserver: waitpid returned unexpected pid")
