"""Reading a rig's YAML, with `base:`: a rig that runs the same hardware as another names it and gives only
what differs, so the hardware's facts (masses, track, sensors, wiring, link) have one source.

    base: desktop-cartpole     # a shipped rig's name, or a YAML path relative to this file
    name: desktop-cartpole-swingup
    limits: {...}              # a top-level key replaces the base's whole (a section is not merged key by key)
    robustness: null           # null removes the base's key

A base may have a base of its own; a chain that comes back to a file it has passed is refused. A rig on a base gives
a name of its own: its check record (rig_checks/NAME.json) goes by name, and one under its base's would stand for the
base's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bpd.errors import BpdError
from bpd.io import read_yaml

RIGS = Path(__file__).resolve().parent / "rigs"


def read_rig_yaml(p: Path) -> tuple[object, tuple[Path, ...]]:
    """The rig's keys with its bases' under them, and the files they came from (the rig's own first)."""
    raw: object = read_yaml(p)
    chain: tuple[Path, ...] = (p.resolve(),)
    name, names = raw.get("name") if isinstance(raw, dict) else None, []
    while isinstance(raw, dict) and "base" in raw:
        own: dict = raw
        base = own["base"]
        if not isinstance(base, str) or not base.strip():
            raise BpdError(f"{p}: not a valid rig description: base must name a rig or a YAML path (got {base!r})")
        at = chain[-1].parent / base
        bp = at if at.suffix in (".yaml", ".yml") and at.is_file() else RIGS / f"{base}.yaml"
        if not bp.is_file():
            known = ", ".join(sorted(x.stem for x in RIGS.glob("*.yaml")))
            raise BpdError(f"{p}: base {base!r} is neither a rig ({known}) nor a YAML file beside {chain[-1].name}")
        if bp.resolve() in chain:
            raise BpdError(f"{p}: base {base!r} comes back to {bp.name}: a rig cannot be its own base")
        under = read_yaml(bp)
        if not isinstance(under, dict):
            raise BpdError(f"{bp}: not a valid rig description: expected a mapping of keys")
        names.append(under.get("name"))
        if name is None or name in names:  # a rig on a base names itself
            why = ("missing key 'name'" if name is None else f"name {name!r} is its base's") + (
                ": a rig on a base names itself (its check record, rig_checks/NAME.json, goes by name: one under its "
                "base's name would stand for the base's)")
            raise BpdError(f"{p}: not a valid rig description: {why}")
        # the base's keys under the rig's (a null stays until every base is read); the base's own base next
        raw, chain = {**under, **{k: v for k, v in own.items() if k != "base"}}, chain + (bp.resolve(),)
    if len(chain) > 1 and isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if v is not None}
    return raw, chain


def rig_sha256(files: tuple[Path, ...]) -> str:
    """The hash of a rig's description as it was read: its own file's bytes, then each base's, in order (a rig
    without a base hashes as its file alone), so that a change to a base is a change to every rig built on it."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def spec_files(spec) -> tuple[Path, ...]:
    """The files a rig description was read from: its sources, or its path alone where it was made or changed in
    code (a spec whose path was replaced does not keep the old file's bases)."""
    if spec.sources and spec.path is not None and spec.sources[0] == spec.path:
        return tuple(spec.sources)
    return (spec.path,) if spec.path is not None else ()
