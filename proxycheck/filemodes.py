"""Who may read what proxycheck creates: the state directory and the SQLite database, which
holds every proxy password. One rule, here.

Rules:
1. Others never: a directory or file proxycheck creates is not readable, writable or searchable
   by users outside its owner and group, whatever the umask (022 used to give 0755 and 0644).
2. The group shares only when sharing was set up on purpose: the umask leaves the group write
   access (``UMask=0007`` in deploy/proxycheck.service, 0002 on a shared account), or the
   directory the new entry is created in is setgid (``install -d -m 2770 -g proxycheck DIR``).
   Then the group gets what workers in it need: 0770 on the state directory, 0660 on the
   database. Otherwise the owner alone: 0700 and 0600. (SQLite gives its -wal and -shm files the
   database file's mode.)
3. Modes are set when proxycheck creates the entry, never changed on an existing one: an
   administrator's ``chmod`` stands.
4. A file holding a secret (a config file with ``[http].token``, the token file) that others can
   read or write is refused, not used (``open_to_others``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_DIR, SHARED_DIR = 0o700, 0o770
OWNER_FILE, SHARED_FILE = 0o600, 0o660


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, which races with
    other threads creating files); Linux 4.7+ shows it in /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def group_shares(directory: str | os.PathLike[str]) -> bool:
    """Rule 2: is sharing with the group set up for entries created in ``directory``?"""
    if not current_umask() & 0o020:
        return True
    try:
        return bool(os.stat(directory).st_mode & stat.S_ISGID)
    except OSError:
        return False


def make_state_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` and its missing parents; ``path`` itself, if created here, with rules 1 and 2
    (its parents keep the umask's mode: they are not ours)."""
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = SHARED_DIR if group_shares(path.parent) else OWNER_DIR
    try:
        path.mkdir(mode=OWNER_DIR)  # never more open than the owner's for a moment
    except FileExistsError:
        return path  # made meanwhile by another process: rule 3
    os.chmod(path, mode | (os.stat(path).st_mode & stat.S_ISGID))  # the umask may have taken bits
    return path


def create_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty with rules 1 and 2 unless it exists (rule 3)."""
    path = Path(path)
    mode = SHARED_FILE if group_shares(path.parent) else OWNER_FILE
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, OWNER_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_to_others(mode: int) -> bool:
    """Rule 4: may users outside the owner and group read or write a file of this ``st_mode``?"""
    return bool(mode & (stat.S_IROTH | stat.S_IWOTH))


__all__ = ["create_file", "current_umask", "group_shares", "make_state_dir", "open_to_others"]
