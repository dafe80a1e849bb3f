"""Filesystem helpers: atomic writes (a temporary name, then a rename), the refusal to overwrite by accident,
folder locks of a live writer, and the clean-up of temporaries that dead writers left behind."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator

__all__ = ["FolderLock", "atomic_write", "check_output_file", "check_output_folder", "clean_temporaries",
           "new_file", "pid_alive", "temporary_folder"]

#: temporary names of :func:`atomic_write` and :func:`temporary_folder`: ``.<name>.lamino-<pid>-<random><suffix>``
TEMP_MARK = ".lamino-"
_TEMP = re.compile(r"^\.(?P<name>.+)\.lamino-(?P<pid>\d+)-[A-Za-z0-9_]+")
LOCK_NAME = ".lamino.lock"


@contextlib.contextmanager
def atomic_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success rename it to ``path``, on error delete it.

    Readers never see a half-written ``path``, and a failed write leaves nothing behind. The temporary name is
    hidden and names its writer (``.<name>.lamino-<pid>-<random><suffix>``), so a process killed mid-write
    leaves no file that looks finished, and :func:`clean_temporaries` can tell a dead writer's file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}{TEMP_MARK}{os.getpid()}-",
                               suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                     # mkstemp makes 0600; final files follow the umask
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def temporary_folder(path: str) -> str:
    """Create and return an empty hidden folder beside ``path``, named like :func:`atomic_write`'s temporaries
    (``.<name>.lamino-<pid>-<random>``), so :func:`clean_temporaries` deletes it once its writer is dead. The
    caller renames it into place or deletes it."""
    path = os.path.abspath(os.fspath(path))
    return tempfile.mkdtemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}{TEMP_MARK}{os.getpid()}-")


def new_file(path, overwrite: bool) -> str:
    """``path`` as a string, refused (one-line ValueError) if it exists and ``overwrite`` is false."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"path={path!r} exists; pass overwrite=True to replace it")
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def clean_temporaries(folder: str, prefix: str = "", min_age_s: float = 60.0, unknown_age_s: float = 3600.0) \
        -> list[str]:
    """Delete temporaries of dead writers in ``folder`` (not recursive); return the deleted paths.

    A temporary of :func:`atomic_write` or :func:`temporary_folder` (``.<name>.lamino-<pid>-…``, a file or a
    folder, deleted with its contents) is deleted when its writer is not alive on this host and it is older than
    ``min_age_s``; another hidden ``.<name>.…`` file (not folder: an older lamino's temporary) only when older
    than ``unknown_age_s``. ``prefix`` restricts the clean-up to temporaries of files whose name starts with it.
    A live writer's file or folder is never touched."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        if not name.startswith("." + prefix) or name == LOCK_NAME or name in (".", ".."):
            continue
        path = os.path.join(folder, name)
        m = _TEMP.match(name)
        try:
            if os.path.islink(path):
                continue
            is_dir = os.path.isdir(path)
            if not (os.path.isfile(path) or (is_dir and m)):
                continue
            age = now - os.path.getmtime(path)
        except OSError:
            continue
        if m:
            stale = age > min_age_s and not pid_alive(int(m.group("pid")))
        else:
            stale = age > unknown_age_s and name.count(".") >= 2     # ".<name>.<random>…" of an older lamino
        if stale:
            if is_dir:
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.lexists(path):
                    removed.append(path)
                continue
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


class FolderLock:
    """An exclusive lock of a folder by one live process: the file ``<folder>/.lamino.lock`` holding
    ``pid host``, created with ``O_CREAT | O_EXCL``.

    A second process gets a one-line ValueError naming the holder; a lock whose process is dead (same host) is
    stale and is taken over with a warning. Re-entrant within one process. Use as a context manager, or call
    :meth:`acquire` / :meth:`release`."""

    _held: dict[str, int] = {}                        # lock path → nesting depth, in this process

    def __init__(self, folder: str, what: str = "folder"):
        self.folder = os.fspath(folder)
        self.path = os.path.abspath(os.path.join(self.folder, LOCK_NAME))
        self.what = what
        self.acquired = False

    def acquire(self) -> FolderLock:
        if self.acquired:
            return self
        if FolderLock._held.get(self.path, 0) > 0:
            FolderLock._held[self.path] += 1
            self.acquired = True
            return self
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_stale()                  # raises unless the lock was stale and is now gone
                continue
            except OSError as exc:
                raise ValueError(f"{self.what} {self.folder!r} cannot be locked ({exc.strerror}): give a writable "
                                 "folder") from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            FolderLock._held[self.path] = 1
            self.acquired = True
            return self
        raise ValueError(f"{self.what} {self.folder!r} cannot be locked: {self.path} keeps changing; try again")

    def _take_over_stale(self) -> None:
        """Remove the lock file if its process is dead on this host (warn); else raise the one-line error."""
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return
        except OSError:
            text = ""
        parts = text.split()
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        host = parts[1] if len(parts) > 1 else None
        if pid is not None and host == socket.gethostname() and not pid_alive(pid):
            warnings.warn(f"{self.what} {self.folder!r} was locked by process {pid}, which is gone: taking over "
                          "its stale lock", stacklevel=3)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            return
        if pid is None:                                  # empty or garbled: a writer between create and write
            try:
                age = time.time() - os.path.getmtime(self.path)
            except FileNotFoundError:
                return
            if age > 60:
                warnings.warn(f"{self.what} {self.folder!r} had an unreadable lock file: taking it over", stacklevel=3)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                return
        who = f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
        raise ValueError(f"{self.what} {self.folder!r} is in use by {who if pid is not None else 'another run'}: "
                         f"wait for it to finish, or give another folder (if no such run exists, delete "
                         f"{self.path})")

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        depth = FolderLock._held.get(self.path, 0) - 1
        if depth > 0:
            FolderLock._held[self.path] = depth
            return
        FolderLock._held.pop(self.path, None)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _writable_dir(folder: str, flag: str, path: str) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{flag} {path!r} is not allowed: {folder!r} is a file, not a folder; give a path in a "
                         "writable folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r} is not allowed: folder {folder!r} is not writable; give a path in a "
                         "writable folder")


def _existing_ancestor(folder: str, flag: str, path: str) -> str:
    """The nearest existing ancestor of ``folder``; a file on the way is an error."""
    current = os.path.abspath(folder)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if not os.path.isdir(current):
        raise ValueError(f"{flag} {path!r} is not allowed: {current!r} is a file, not a folder; give a path in a "
                         "writable folder")
    return current


def check_output_file(path, flag: str = "--out") -> str:
    """Check before any work that the file ``path`` can be written: its folder exists, is a folder and is
    writable, and ``path`` is not a folder. Raises a one-line ValueError naming ``flag``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is not allowed: it is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        _existing_ancestor(folder, flag, path)
        raise ValueError(f"{flag} {path!r} is not allowed: folder {os.path.dirname(path) or '.'!r} does not exist; "
                         "create it first or give a path in an existing folder")
    _writable_dir(folder, flag, path)
    return path


def check_output_folder(path, flag: str = "--out") -> str:
    """Check before any work that the folder ``path`` can be created or written: it is not a file, and it (or
    its nearest existing parent, where it does not exist yet) is a writable folder. Raises a one-line
    ValueError naming ``flag``."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is not allowed: it is an existing file; give a folder")
    base = _existing_ancestor(path, flag, path)
    _writable_dir(base, flag, path)
    return path
