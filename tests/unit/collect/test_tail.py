"""Following a log through rename and copytruncate rotations, while running and across a
restart: every complete line exactly once, in order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.collect.tail import Tailer, TailError


def write(path: Path, *lines: str, partial: str = "") -> None:
    with path.open("ab") as f:
        f.write("".join(f"{line}\n" for line in lines).encode() + partial.encode())


def drain(tailer: Tailer, commit: bool = True, max_lines: int = 10_000) -> list[str]:
    got = tailer.read(max_lines)
    if got and commit:
        tailer.commit(got[-1][1])
    return [line.decode() for line, _ in got]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


def test_complete_lines_only_and_a_restart_resumes_after_the_commit(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "a", "b", partial='{"half')
    t = Tailer(log, ckpt)
    assert drain(t) == ["a", "b"]
    write(log, ' line"}', "c")
    assert drain(t) == ['{"half line"}', "c"]
    t.close()
    write(log, "d")
    again = Tailer(log, ckpt)
    assert drain(again) == ["d"]


def test_lines_read_but_not_committed_come_again_after_a_restart(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "a", "b", "c")
    t = Tailer(log, ckpt)
    first = t.read(1)
    t.commit(first[-1][1])
    assert [line for line, _ in t.read()] == [b"b", b"c"]  # not committed
    t.close()
    assert drain(Tailer(log, ckpt)) == ["b", "c"]


def test_a_rename_rotation_while_running_drains_the_old_file_first(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "1", "2", "3")
    t = Tailer(log, ckpt)
    assert drain(t, max_lines=2) == ["1", "2"]
    writer = log.open("ab")  # nginx keeps its descriptor until it reopens
    log.rename(log.with_name("access.log.1"))
    writer.write(b"4\n")
    writer.close()
    write(log, "5", "6")  # the reopened log
    assert drain(t) == ["3", "4", "5", "6"]
    write(log, "7")
    assert drain(t) == ["7"]


def test_a_rename_rotation_while_stopped_is_found_by_its_identity(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "1", "2", "3")
    t = Tailer(log, ckpt)
    assert drain(t, max_lines=1) == ["1"]
    t.close()
    write(log, "4")
    log.rename(log.with_name("access.log.1"))
    write(log, "5")
    assert drain(Tailer(log, ckpt)) == ["2", "3", "4", "5"]


def test_copytruncate_while_running_reads_the_missed_lines_from_the_copy(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "1", "2")
    t = Tailer(log, ckpt)
    assert drain(t) == ["1", "2"]
    write(log, "3", "4")  # written after our read, before the copy
    shutil.copyfile(log, log.with_name("access.log.1"))
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, "5")
    assert drain(t) == ["3", "4", "5"]


def test_copytruncate_while_stopped(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "1", "2")
    t = Tailer(log, ckpt)
    assert drain(t) == ["1", "2"]
    t.close()
    write(log, "3")
    shutil.copyfile(log, log.with_name("access.log.1"))
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, "4", "5", "6", "7")  # already longer than the old position: inode alone would lie
    assert drain(Tailer(log, ckpt)) == ["3", "4", "5", "6", "7"]


def test_a_new_file_under_a_reused_inode_is_read_from_its_start(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "old-1", "old-2")
    t = Tailer(log, ckpt)
    drain(t)
    t.close()
    with log.open("r+b") as f:  # same inode, other content (as after delete + create)
        f.truncate(0)
        f.write(b"new-1\nnew-2\nnew-3\nnew-4\n")
    assert drain(Tailer(log, ckpt)) == ["new-1", "new-2", "new-3", "new-4"]


def test_a_corrupt_checkpoint_is_an_error_naming_the_file(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "a")
    ckpt.write_text(json.dumps({"format": 1, "offset": 3}))
    with pytest.raises(TailError, match=r"access\.pos: not a position file"):
        Tailer(log, ckpt)
    ckpt.write_text("{nope")
    with pytest.raises(TailError, match=r"access\.pos"):
        Tailer(log, ckpt)


def test_a_missing_log_is_waited_for(log: Path) -> None:
    t = Tailer(log, log.with_name("access.pos"))
    assert drain(t) == []
    write(log, "first")
    assert drain(t) == ["first"]


def test_the_renamed_file_is_followed_until_the_writer_moves_to_the_new_one(log: Path) -> None:
    ckpt = log.with_name("access.pos")
    write(log, "1")
    t = Tailer(log, ckpt)
    assert drain(t) == ["1"]
    writer = log.open("ab")
    log.rename(log.with_name("access.log.1"))
    log.touch()  # logrotate's create: the new log exists, nginx has not reopened yet
    assert drain(t) == []
    writer.write(b"2\n")  # nginx still writes to the renamed file
    writer.flush()
    assert drain(t) == ["2"]
    writer.write(b"3\n")
    writer.close()
    write(log, "4")  # reopened: the new file has bytes
    assert drain(t) == ["3", "4"]


def copytruncate(log: Path) -> None:
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    with log.open("r+b") as f:
        f.truncate(0)


def test_after_a_copytruncate_the_regrown_file_is_read_from_disk_not_a_stale_buffer(
    log: Path,
) -> None:
    """Found with real nginx: a buffered reader still held the old bytes after the truncation,
    and reading the regrown file from offset 0 handed out the old lines again."""
    write(log, *(f"old-line-{i:02d}" for i in range(16)))
    t = Tailer(log, log.with_name("access.pos"))
    assert drain(t, max_lines=9) == [f"old-line-{i:02d}" for i in range(9)]
    copytruncate(log)
    write(log, *(f"new{i}" for i in range(12)))  # shorter than the old offset
    got = drain(t, max_lines=7)
    while more := drain(t, max_lines=7):
        got += more
    assert got == [f"old-line-{i:02d}" for i in range(9, 16)] + [f"new{i}" for i in range(12)]


def test_copytruncate_of_lines_written_since_the_log_was_seen_empty(log: Path) -> None:
    """An empty log has no head to recognise its copy by: the copy made since is found by its
    modification time (the helper's reproduction of the real logrotate case)."""
    log.touch()
    t = Tailer(log, log.with_name("access.pos"))
    assert drain(t) == []
    write(log, "1", "2")
    copytruncate(log)
    write(log, "3")
    assert drain(t) + drain(t) == ["1", "2", "3"]
    write(log, "4")
    assert drain(t) == ["4"]  # the copy is not read again
