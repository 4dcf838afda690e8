"""What a killed `bpd export` / `firmware build` leaves (bpd/io.py StagedDir): a process killed outright cannot
remove its hidden stage, and one killed in the middle of its swap leaves the previous directory moved aside. The
next run of the same place cleans both up and puts the previous directory back; a live process's stage stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from bpd.io import StagedDir

ROOT = Path(__file__).resolve().parents[1]


def _killed_in(tmp_path: Path, where: str) -> None:
    """A child that enters a StagedDir of tmp_path/out, writes a new file, and is killed -9 at `where`."""
    code = textwrap.dedent(f"""
        import os, signal
        from bpd.io import StagedDir
        os.replace = (lambda real: lambda a, b: (os.kill(os.getpid(), signal.SIGKILL)
                      if {where!r} == "swap" and str(b).endswith("out") else real(a, b)))(os.replace)
        with StagedDir({str(tmp_path / "out")!r}) as stage:
            (stage.path / "new.txt").write_text("new")
            if {where!r} == "stage":
                os.kill(os.getpid(), signal.SIGKILL)
            stage.commit()
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == -signal.SIGKILL


def _names(tmp_path: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in tmp_path.iterdir())


def test_a_stage_left_by_a_killed_process_is_removed_by_the_next(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    _killed_in(tmp_path, "stage")
    assert _names(tmp_path) == [".out.stage", "out"]  # left behind, hidden
    with StagedDir(tmp_path / "out") as stage:
        (stage.path / "next.txt").write_text("next")
        assert _names(tmp_path) == [".out.stage", "out"]  # the dead one's removed; this one's own is there
        stage.commit()
    assert _names(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["next.txt"]


def test_a_swap_cut_by_a_kill_gives_the_previous_directory_back(tmp_path):
    """Killed between moving the previous directory aside and moving the new one in: no `out` at all, the
    previous one hidden in .out.old-*/d. The next StagedDir puts it back before anything else."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    _killed_in(tmp_path, "swap")
    assert _names(tmp_path) == [".out.old", ".out.stage"]
    with StagedDir(tmp_path / "out"):
        assert (tmp_path / "out" / "old.txt").read_text() == "old"  # back, and left as it is when not committed
    assert _names(tmp_path) == ["out"]


def test_a_live_process_stage_and_another_hosts_are_left(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with StagedDir(tmp_path / "out") as stage:
            host = stage.path.name.split("-")[1]
        for name in (f".out.stage-{host}-{live.pid}-abc", f".out.stage-otherhost-{live.pid + 1}-abc"):
            (tmp_path / name).mkdir()
        with StagedDir(tmp_path / "out"):
            pass
        assert sorted(p.name for p in tmp_path.iterdir() if "abc" in p.name) == sorted([
            f".out.stage-{host}-{live.pid}-abc", f".out.stage-otherhost-{live.pid + 1}-abc"])
    finally:
        live.kill()
        live.wait()
    with StagedDir(tmp_path / "out"):  # its process gone: its stage goes; the other host's stays
        pass
    assert [p.name for p in tmp_path.iterdir()] == [f".out.stage-otherhost-{live.pid + 1}-abc"]


def test_a_stage_of_a_host_whose_name_begins_as_this_ones_is_left(tmp_path, monkeypatch):
    """Two hosts on a shared disk whose names agree in their first 40 characters (ci-runner-ephemeral-...-0001 and
    -0002) named their stages alike: a `bpd export` on one removed the stage the other was still writing (its process
    id, unknown here, read as gone). The host's part of the name holds a hash of the whole name now."""
    import socket

    long = "ci-runner-ephemeral-us-east-1-production-000"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # an id no process of this host has
    monkeypatch.setattr(socket, "gethostname", lambda: long + "1")
    with StagedDir(tmp_path / "out") as other:
        kept = tmp_path / other.path.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-")
        kept.mkdir()  # the other host's live stage
    monkeypatch.setattr(socket, "gethostname", lambda: long + "2")
    with StagedDir(tmp_path / "out"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]
