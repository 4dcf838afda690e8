"""The real-hardware path as a newcomer walks it: what a rig YAML may say about its limits, and what a port
that does not open tells the user to do. Each answer is one line and a non-zero exit."""

from __future__ import annotations

import errno
import re

import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig


def _rig(tmp_path, **limits) -> str:
    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    raw["limits"].update(limits)
    p = tmp_path / "rig.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


@pytest.mark.parametrize("position, msg", [
    (0.3, "limits.position 0.3 is not inside the track (+-0.25 m)"),
    (0.25, "limits.position 0.25 is not inside the track (+-0.25 m)"),
    (0.23, "limits.position 0.23 is not inside the end stops (closing at +-0.23)"),
])
def test_a_position_limit_beyond_the_hard_stops_or_the_end_stops_is_refused(tmp_path, position, msg):
    """The firmware's position limit is what stops the cart before the track ends; one at or beyond the hard
    stops (track) was taken, and the first a user learned of it was the cart hitting the end of the track."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg)):
        load_rig(_rig(tmp_path, position=position))


def test_a_position_limit_inside_the_end_stops_is_taken(tmp_path):
    assert load_rig(_rig(tmp_path, position=0.22)).limits["position"] == 0.22
    assert load_rig("desktop-cartpole").limits["position"] == 0.2  # every shipped rig loads
    for name in ("desktop-cartpole-swingup", "gym-inverted-pendulum", "rotary-pendulum"):
        load_rig(name)


@pytest.mark.parametrize("where, key, msg", [
    (None, "watchdog_tick", "unknown key 'watchdog_tick' (did you mean 'watchdog_ticks'?)"),
    ("limits", "postion", "unknown key limits.'postion' (did you mean 'position'?)"),
    ("sensors", "zzz", "unknown key sensors.'zzz'"),
    ("serial", "baudrate", "unknown key serial.'baudrate' (did you mean 'baud'?)"),
])
def test_a_misspelt_rig_key_is_refused_with_the_key_it_is_closest_to(tmp_path, where, key, msg):
    """A misspelt optional key (the watchdog's length) would leave its default in force without a word."""
    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    (raw[where] if where else raw)[key] = 3
    p = tmp_path / "rig.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg) + "$"):
        load_rig(str(p))


def test_rig_check_of_such_a_rig_is_one_line(tmp_path, monkeypatch, capsys):
    from bpd_app.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["rig", "check", "--port", "sim", "--rig", _rig(tmp_path, position=0.3)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("limits.position 0.3 is not inside the track (+-0.25 m): the firmware "
                                             "would stop the cart only after it hits the hard stops; set it inside")
    assert not (tmp_path / "rig_checks").exists()


def _port_refusing(monkeypatch, code: int) -> None:
    """serial_for_url as pyserial fails on Linux: a SerialException raised while handling os.open's OSError."""
    import os

    import serial

    def refuse(port, **kw):
        try:
            raise OSError(code, os.strerror(code), port)
        except OSError as e:
            raise serial.SerialException(e.errno, f"could not open port {port}: {e}")  # noqa: B904 (as pyserial)

    monkeypatch.setattr(serial, "serial_for_url", refuse)


@pytest.mark.parametrize("code, hint", [
    (errno.EACCES, "Permission denied (the port's group may open it: sudo usermod -aG dialout $USER, then log in "
                   "again)"),
    (errno.ENOENT, "No such file or directory (is the board plugged in? its port is one of `ls /dev/ttyACM* "
                   "/dev/ttyUSB*`)"),
    (errno.EBUSY, "Device or resource busy (another program holds it: close any serial monitor or other `bpd` on "
                  "it)"),
])
def test_a_board_port_that_does_not_open_says_what_to_do(tmp_path, monkeypatch, capsys, code, hint):
    """The first thing a new board does on Linux: a port the user may not open (not in the dialout group), one
    not there (board unplugged, another name), one held by a serial monitor. The errno alone said none of it."""
    from bpd_app.cli import main

    monkeypatch.chdir(tmp_path)
    _port_refusing(monkeypatch, code)
    assert main(["rig", "check", "--port", "/dev/ttyACM0", "--rig", "desktop-cartpole"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"bpd: error: cannot open /dev/ttyACM0: {hint}"]


def test_a_port_that_is_no_device_path_gets_no_hint(monkeypatch):
    from hil.link import DeviceLink, LinkError

    _port_refusing(monkeypatch, errno.ECONNREFUSED)
    with pytest.raises(LinkError, match=r"^cannot open socket://127.0.0.1:1: Connection refused$"):
        DeviceLink("socket://127.0.0.1:1")


@pytest.mark.parametrize("rig, period_us, said", [
    ("gym-inverted-pendulum", 20000, ", the plant stepping 40 ms a 20 ms tick (2x real time)"),
    ("gym-inverted-pendulum", None, ""),  # its own 40 ms: real time
    ("desktop-cartpole", 20000, ""),  # a MuJoCo rig of bpd's steps its plant by the period: real time at any
])
def test_rig_sim_says_when_its_plant_runs_faster_than_real_time(rig, period_us, said):
    """Known answer: gym-inverted-pendulum's plant steps frame_skip 2 x 20 ms a tick whatever --period-us says, so
    at 20000 it runs at twice real time; rig sim's first line says so (it said only '50 Hz')."""
    from types import SimpleNamespace

    from firmware_host.rig import Plant
    from firmware_host.rig.sim import _time_lapse

    spec = load_rig(rig)
    if period_us:
        spec.period_us = period_us
    assert _time_lapse(SimpleNamespace(plant=Plant(spec), spec=spec)) == said  # type: ignore[arg-type]
