"""The single-file form of a stax archive: an uncompressed POSIX tar (the columns are compressed
already) holding exactly the directory form's two files, manifest first.

Written atomically (a temporary sibling file, fsynced, renamed into place). Read without
extracting anything: only regular members with one of the two known names are read, into
memory, each bounded in size, so a crafted file can name no path outside itself; the manifest's
sizes and the columns' checksums are then checked as for a directory.
"""

from __future__ import annotations

import os
import tarfile
import tempfile

from stax.archive.layout import DATA_FILE, MAIN_FILE, is_file_archive, read_member

__all__ = ["is_file_archive", "pack", "read_member", "wants_file"]

MEMBERS = (MAIN_FILE, DATA_FILE)


def pack(src_dir: str, path: str) -> int:
    """Write the archive directory ``src_dir`` as the single file ``path`` (atomically);
    returns its size."""
    parent = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in MEMBERS:
                    info = tar.gettarinfo(os.path.join(src_dir, name), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with open(os.path.join(src_dir, name), "rb") as f:
                        tar.addfile(info, f)
            raw.flush()
            os.fsync(raw.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return os.path.getsize(path)


def wants_file(path: str, fmt: str | None) -> bool:
    """Whether ``stax save PATH`` writes the single file: ``fmt`` "file" or "dir" decides;
    otherwise the form of the archive already at ``path`` is kept, and a new one is a
    directory (as before single files existed)."""
    if fmt is not None:
        return fmt == "file"
    return is_file_archive(path)
