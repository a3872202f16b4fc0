"""The worker's side of live logs: what a training job's log file gives each renewal."""

from __future__ import annotations

from pathlib import Path

from aijobs.worker.logs import LogFollower


def test_chunks_wait_until_a_renewal_lands_and_split_no_character(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    follower = LogFollower(path, start=100, keep=1000)
    assert follower.chunk() is None  # no file yet
    assert not follower.grew()
    path.write_bytes("epoch 1 ✓\n".encode() + "é".encode()[:1])  # a character cut in two
    assert follower.grew()
    assert follower.chunk() == ("epoch 1 ✓\n", 100)
    # not acknowledged (the renewal failed): sent again from the same offset, with what is new
    with path.open("ab") as f:
        f.write("é".encode()[1:] + b"2\n")
    assert follower.chunk() == ("epoch 1 ✓\né2\n", 100)
    follower.sent("epoch 1 ✓\né2\n", 100)
    assert follower.chunk() is None
    with path.open("ab") as f:
        f.write(b"x")
    assert follower.chunk() == ("x", 113)


def test_a_flood_keeps_the_tail_and_the_offsets(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("".join(f"{n:04d}\n" for n in range(100)))  # 500 characters
    follower = LogFollower(path, start=0, keep=50)
    text, at = follower.chunk() or ("", -1)
    assert (len(text), at) == (50, 450)  # a gap: the store starts its kept text afresh
    assert text.startswith("0090\n")
    follower.sent(text, at)
    path.write_bytes(path.read_bytes() + b"\xff")  # not UTF-8: replaced, at the end
    assert follower.chunk(final=True) == ("\ufffd", 500)
