"""A rig of one's own as an environment (`rig:PATH`, `rig-dr:PATH`; firmware_host/rig/yaml_env.py): a teacher for
one's own plant trained, evaluated and built for without editing a shipped rig's YAML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig
from tests.conftest import run_bpd
from training.envs import make_env


def _own_rig(tmp_path, name="my-furuta", drop=(), **changes) -> str:
    raw = yaml.safe_load(load_rig("rotary-pendulum").path.read_text())
    raw["name"] = name
    raw.update(changes)
    for key in drop:
        raw.pop(key)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_rig_path_is_the_plant_of_that_yaml_nominal_and_randomised(tmp_path, monkeypatch):
    """Known answers: `rig:PATH` of a rotary YAML whose pendulum is twice the shipped rig's length is a swing-up
    environment whose MuJoCo pendulum has its centre of mass twice as far out (m g l doubles, the mass the same),
    starting hanging (angle pi); the path relative to the working directory; `rig-dr:` draws the YAML's
    randomisation, `rig:` does not."""
    raw = yaml.safe_load(load_rig("rotary-pendulum").path.read_text())
    _own_rig(tmp_path, pendulum=raw["pendulum"] | {"length": 2 * raw["pendulum"]["length"]})
    monkeypatch.chdir(tmp_path)
    env = make_env("rig:my-furuta.yaml", seed=0)
    u = env.unwrapped
    assert type(u).__name__ == "SwingUpEnv" and not u.randomize
    shipped = make_env("firmware_host.rig:bpd/rotary-pendulum-v0").unwrapped
    assert u.mgl == pytest.approx(2 * shipped.mgl, rel=1e-9)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4,) and abs(abs(obs[1]) - np.pi) < 0.1
    assert make_env("rig-dr:my-furuta.yaml").unwrapped.randomize


@pytest.mark.parametrize("env_id, msg", [
    ("rig:nowhere.yaml", r"rig:nowhere.yaml: no such rig YAML \(the path is relative to the working directory\)"),
    ("rig-dr:plain.yaml", "rig-dr:plain.yaml: the rig has no randomization block to draw from"),
])
def test_a_rig_env_that_cannot_be_is_one_line(tmp_path, monkeypatch, env_id, msg):
    monkeypatch.chdir(tmp_path)
    _own_rig(tmp_path, name="plain", drop=("randomization",))
    with pytest.raises(BpdError, match=msg):
        make_env(env_id)


def test_a_policy_of_ones_own_rig_is_for_that_rig_alone(tmp_path, monkeypatch):
    """trained_here and rig_of by the YAML's path, however it is written: `rig:PATH` is the rig read from PATH, not
    the shipped rotary pendulum (a note, not the same plant), and firmware build's rig of such an export is PATH
    where the sizes are the rig's."""
    from firmware_host.rig.yaml_env import rig_of

    path = _own_rig(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_rig(path).trained_here("rig:my-furuta.yaml") and load_rig(path).trained_here(f"rig-dr:{path}")
    assert not load_rig("rotary-pendulum").trained_here("rig:my-furuta.yaml")
    assert rig_of("rig:my-furuta.yaml", 4, 1) == "my-furuta.yaml" and rig_of("rig:my-furuta.yaml", 5, 1) is None
    assert rig_of("firmware_host.rig:bpd/rotary-pendulum-dr-v0", 4, 1) == "rotary-pendulum"


def test_a_classical_export_of_ones_own_rig_is_evaluated_in_it(tmp_path):
    """Known answer: `bpd evaluate` of the classical export of one's own rig YAML said 'unknown environment
    bpd/my-furuta-v0' (the export recorded an id no registry has); it records `rig:PATH`, and its controller swings
    the pendulum up in that environment as on the shipped rig (a positive return per tick at the rig's rate)."""
    _own_rig(tmp_path)
    run_bpd("classical", "export", "--rig", "my-furuta.yaml", "--out", "cx", cwd=tmp_path)
    assert json.loads((tmp_path / "cx" / "export.json").read_text())["env_id"] == "rig:my-furuta.yaml"
    r = run_bpd("evaluate", "cx", "--episodes", "1", "--json", cwd=tmp_path)
    res = json.loads(r.stdout)
    assert res["env_id"] == "rig:my-furuta.yaml" and res["return_mean"] > 0
    shipped = run_bpd("classical", "export", "--rig", "rotary-pendulum", "--out", str(tmp_path / "cs"))
    assert shipped.returncode == 0
    assert json.loads((tmp_path / "cs" / "export.json").read_text())["env_id"] == \
        "firmware_host.rig:bpd/rotary-pendulum-v0"


def test_one_rig_by_any_spelling_of_its_path_is_one_environment(tmp_path, monkeypatch):
    """Known answer: a dataset collected on rig:./my-furuta.yaml given with a teacher of rig-dr:my-furuta.yaml (the
    same YAML, written otherwise) was refused as another environment's; one YAML is one plant, another is not."""
    from types import SimpleNamespace

    from training.collect import check_task
    from training.envs import env_key

    _own_rig(tmp_path)
    _own_rig(tmp_path, name="other")
    monkeypatch.chdir(tmp_path)
    assert env_key("rig:./my-furuta.yaml") == env_key("rig-dr:my-furuta.yaml") == f"rig:{tmp_path / 'my-furuta.yaml'}"
    assert env_key("firmware_host.rig:bpd/rotary-pendulum-v0") == "bpd/rotary-pendulum-v0"
    ds = SimpleNamespace(meta={"env_id": "rig:./my-furuta.yaml", "labels": "the dataset's actions"})
    check_task(ds, SimpleNamespace(env_id="rig-dr:my-furuta.yaml"), "d")  # type: ignore[arg-type]
    with pytest.raises(BpdError, match="a dataset of rig:./my-furuta.yaml, but the teacher is of rig:other.yaml"):
        check_task(ds, SimpleNamespace(env_id="rig:other.yaml", act=lambda o: o), "d")  # type: ignore[arg-type]
