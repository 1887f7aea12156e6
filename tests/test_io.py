"""Atomic writes: whole files or none, with the permissions of any file the user writes."""
from __future__ import annotations

import os
import stat

import pytest

from nc_viz.core.io import atomic_write, atomic_write_bytes, check_writable


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "sub" / "fig.png", b"data")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")

    def broken(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_check_writable_creates_nothing(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "fig.png")
    check_writable(tmp_path / "newdir", folder=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", ["file-as-folder", "folder-as-file"])
def test_check_writable_names_the_path_the_user_gave(tmp_path, make):
    (tmp_path / "plain").write_text("x")
    (tmp_path / "adir").mkdir()
    target = tmp_path / "plain" / "sub" / "fig.png" if make == "file-as-folder" else tmp_path / "adir"
    with pytest.raises(OSError) as err:
        check_writable(target)
    assert err.value.filename == str(target)


def test_a_write_that_fails_names_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b"x")
    assert err.value.filename == str(target) and [p.name for p in tmp_path.iterdir()] == ["adir"]
