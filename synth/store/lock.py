"""The run lock: one `synth run` or `synth filter` at a time per store.

An exclusive ``flock`` on a file beside the store (``synth.db.lock``), taken without
waiting and held until the store is closed. The kernel takes it atomically, so of two
runs started in the same instant exactly one gets it, and drops it when the process
ends, however it ends (``kill -9`` included): no lock is ever left behind by a dead
process, and none needs clearing by hand. A pid written in the runs table can be
reused by an unrelated process; the lock cannot. The file itself stays (removing it
would let a third process lock a new file while the second still holds the old one);
it holds the pid of the last holder, for the refusal message only.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class RunLock:
    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> int | None:
        """Take the lock (a no-op when this store holds it already). None when taken;
        else the holder's pid as it wrote it (0 when it has not written it yet)."""
        if self._fd is not None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # The holder writes its pid just after it takes the lock: a refusal in that
            # instant would read nothing, or the pid of the holder before it.
            deadline = time.monotonic() + 0.5
            while True:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                pid = int(text) if text.isdigit() else 0
                if (pid and _alive(pid)) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            os.close(fd)
            return pid
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
