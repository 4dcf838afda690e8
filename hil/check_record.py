"""The record `bpd rig check` leaves for each rig, and `bpd hil run`'s refusal of a rig whose last check
failed or whose YAML changed since it: apart from the check itself (hil/commission.py), so that the trial
reads it without importing the check, which starts trials of its own."""

from __future__ import annotations

from pathlib import Path

from bpd.errors import BpdError
from bpd.io import read_json
from firmware_host.rig import RigSpec
from firmware_host.rig.rig_yaml import rig_sha256, spec_files


def rig_hash(spec: RigSpec) -> str:
    """The rig's YAML as read, its bases' included (a change to a base is a change to the rig)."""
    files = spec_files(spec)
    return rig_sha256(files) if files else ""


def refuse_unchecked(spec: RigSpec, record: str | Path) -> None:
    """For `bpd hil run`: a rig whose last check failed, or whose YAML changed since its last check (passed or
    failed), is refused; one never checked, or whose last check passed on its YAML as it is, is not."""
    p = Path(record) / f"{spec.name}.json"
    if not p.is_file():
        return
    last = read_json(p, "rig check record")
    if not isinstance(last, dict) or last.get("passed") is True and last.get("rig_sha256") == rig_hash(spec):
        return
    if last.get("passed") is True:
        raise BpdError(f"rig {spec.name}: its YAML changed since its last check ({p}): run `bpd rig check` "
                       "again, or give --unchecked")
    raise BpdError(f"rig {spec.name}: its last check failed ({', '.join(last.get('failed', []))}; {p}): fix the "
                   "rig and run `bpd rig check` again, or give --unchecked")
