import pytest

from lamino.io import atomic_write


def test_atomic_write_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write(str(target), suffix=".txt") as tmp:
        with open(tmp, "w") as fh:
            fh.write("done")
        assert not target.exists()                    # nothing visible before the rename
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_write(str(target)) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("write failed")
    assert target.read_text() == "done" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = tmp_path / "out.txt"
        with atomic_write(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("x")
        assert (path.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)
