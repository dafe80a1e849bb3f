"""Filesystem helpers: atomic writes (a temporary name, then a rename) and the refusal to overwrite by accident."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_write", "new_file"]


@contextlib.contextmanager
def atomic_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success rename it to ``path``, on error delete it.

    Readers never see a half-written ``path``, and a failed write leaves nothing behind. The temporary name is
    hidden (``.<name>.<random><suffix>``), so a process killed mid-write leaves no file that looks finished.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
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


def new_file(path, overwrite: bool) -> str:
    """``path`` as a string, refused (one-line ValueError) if it exists and ``overwrite`` is false."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"path={path!r} exists; pass overwrite=True to replace it")
    return path
