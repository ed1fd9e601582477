"""Private files: everything under a data dir is readable by its owner only.

The data dir holds recordings, transcripts, packages, codes and tokens, so it is created
0700 and every file in it 0600 whatever the process umask: files are created with an
explicit mode and then ``fchmod``-ed (an existing file keeps its old mode on ``O_CREAT``).
SQLite gives ``-wal`` and ``-shm`` the mode of the database file, which is created here
first. At start :func:`tighten` brings a data dir written by an older version (or copied
in under another umask) to the same modes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` 0700, and each missing parent 0700 too (``mkdir -p`` would give the
    parents the umask's mode); an existing ``path`` is set to 0700."""
    missing = []
    here = Path(path)
    while not here.exists():
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread
            pass
        os.chmod(directory, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return Path(path)


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` with mode 0600, also when the file already existed."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes | str) -> None:
    """Write a whole file, 0600."""
    raw = data.encode() if isinstance(data, str) else data
    with os.fdopen(open_private(path), "wb") as fh:
        fh.write(raw)


def touch_private(path: Path) -> None:
    """Make sure ``path`` exists, 0600, without changing its content."""
    os.close(open_private(path, os.O_RDWR | os.O_CREAT))


def tighten(root: Path) -> int:
    """Set every directory under ``root`` (and ``root``) to 0700 and every regular file to
    0600; symlinks are left alone (never followed). Returns how many modes changed."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        changed += _set_mode(Path(dirpath), DIR_MODE)
        for name in filenames:
            changed += _set_mode(Path(dirpath) / name, FILE_MODE)
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return changed


def _set_mode(path: Path, mode: int) -> int:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return 0
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return 0
    os.chmod(path, mode)
    return 1


def loose_files(root: Path) -> list[str]:
    """Paths under ``root`` that a group or other user may read, write or enter."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for path in [Path(dirpath), *(Path(dirpath) / n for n in filenames)]:
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                found.append(f"{path} {stat.filemode(st.st_mode)}")
    return found
