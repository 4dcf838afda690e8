"""Rigs: a YAML description, a MuJoCo plant, and the same plant as a Gymnasium environment (the
firmware core as a software device is firmware_host/rig/device.py).

    gym.make("firmware_host.rig:bpd/desktop-cartpole-v0", randomize=True)
    gym.make("firmware_host.rig:bpd/gym-inverted-pendulum-v0")
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from bpd.errors import BpdError
from firmware_host.rig.rig_yaml import RIGS, read_rig_yaml
from firmware_host.rig.task import check_task
from firmware_host.rig.wiring import check_wiring
from firmware_host.wire.spec import MAX_ACT

if TYPE_CHECKING:
    from training.robustness import RobustnessGrid

DEFAULT_BAUD = 921600  # the host link's baud rate when a rig YAML names none (serial.baud)


@dataclass
class RigSpec:
    name: str
    plant: str
    period_us: int
    raw: dict = field(repr=False)
    path: Path | None = None  # the YAML it was read from
    sources: tuple[Path, ...] = ()  # that YAML and its bases' (rig_yaml.py), for the description's hash

    @property
    def n_pos(self) -> int:
        """Position-like sensors; the observation is these positions, then their velocities."""
        return len(self.sensors["counts_per_unit"])

    @property
    def obs_dim(self) -> int:
        return 2 * self.n_pos

    @property
    def act_dim(self) -> int:
        return int(self.raw.get("actuators", 1))

    @property
    def limits(self) -> dict:
        return self.raw["limits"]

    @property
    def sensors(self) -> dict:
        return self.raw["sensors"]

    @property
    def watchdog_ticks(self) -> int:
        return int(self.raw.get("watchdog_ticks", 10))

    @property
    def track(self) -> float:
        """The hard stops either side of centre (position units), the widest position limit the firmware takes from
        a CONFIG; 0.0 for a rig without one (a rotary arm, the gym pendulum's slider: no bound)."""
        return float(self.raw.get("track") or 0.0)

    @property
    def measured_velocity(self) -> bool:
        return bool(self.sensors["measured_velocity"])

    @property
    def counts_per_unit(self) -> list[float]:
        """Per position sensor: encoder counts per rig unit, or 0 where the sensor reads units."""
        return [float(c) for c in self.sensors["counts_per_unit"]]

    @property
    def has_encoders(self) -> bool:
        """Whether every position sensor is an encoder read in counts, velocity estimated (a rig one can wire and
        commission); else a simulated rig only, whose sensors read the plant's units."""
        return not self.measured_velocity and all(c > 0 for c in self.counts_per_unit)

    @property
    def velocity_filter_hz(self) -> list[float]:
        """Per position sensor: cut-off of the low-pass on its estimated velocity (0: none)."""
        hz = self.sensors.get("velocity_filter_hz", 0) or 0
        hz = list(hz) if isinstance(hz, (list, tuple)) else [hz] * self.n_pos
        return [float(h) for h in hz]

    @property
    def pos_index(self) -> int:
        """The observation checked against the position limit."""
        return int(self.limits.get("position_index", 0))

    @property
    def angle_index(self) -> int:
        """The observation checked against the angle limit."""
        return int(self.limits.get("angle_index", 1))

    @property
    def handover(self) -> dict | None:
        """Hand-over mode's region (docs/protocol.md, rule 17): the learned policy acts where |obs[i]| <
        bounds[i] for every observation, obs[angle_index] wrapped to one turn first; None where the YAML has
        no `handover` block (the rig has no hand-over mode)."""
        h = self.raw.get("handover")
        if h is None:
            return None
        return {"angle_index": int(h.get("angle_index", self.angle_index)), "bounds": [float(b) for b in h["bounds"]]}

    @property
    def policy_envs(self) -> set[str]:
        """The environments a policy for this rig is trained on: the rig's own where registered (bpd/NAME-v0, and a
        swing-up rig's randomised -dr variant), and those the YAML's `envs` names as the same plant (Gymnasium's
        InvertedPendulum-v5 for gym-inverted-pendulum); ids without their `module:` prefix."""
        own = (f"bpd/{self.name}-v0", f"bpd/{self.name}-dr-v0")
        return {e for e in own if e in gym.registry} | {e.rpartition(":")[2] for e in self.raw.get("envs", [])}

    def trained_here(self, env_id: str) -> bool:
        """Whether a policy trained on env_id (with or without its `module:` prefix) is one for this rig; true
        where the rig names no environment (a rig of one's own, by its YAML), as nothing says otherwise; for
        `rig:PATH` (yaml_env.py), whether PATH is this rig's YAML."""
        from training.envs import RIG_ENV, env_key

        if env_id.startswith(RIG_ENV):
            return self.path is not None and env_key(env_id) == env_key(f"rig:{self.path}")
        return not self.policy_envs or env_id.rpartition(":")[2] in self.policy_envs

    def plant_note(self, what: str, env_id: str | None, then: str) -> str | None:
        """The note for a policy of this rig's sizes trained on another plant (said, not refused), or None."""
        if not env_id or self.trained_here(env_id):
            return None
        return (f"bpd: note: {what} was trained on {env_id}, not on rig {self.name}'s plant "
                f"({', '.join(sorted(self.policy_envs))}); {then}")

    @property
    def reset_noise(self) -> float:
        """The uniform +- spread of a reset's angles and velocities (the YAML's reset_noise, else 0.01)."""
        return float(self.raw.get("reset_noise", 0.01))

    @property
    def wiring(self) -> dict | None:
        """How a real board is wired to the rig (checked by check_wiring), or None for a simulated one."""
        return self.raw.get("wiring")

    @property
    def baud(self) -> int:
        return int(self.raw.get("serial", {}).get("baud", DEFAULT_BAUD))

    @property
    def robustness(self) -> RobustnessGrid | None:
        """The variations of the robustness score (the `robustness` block), in the rig's units, at its
        period; None where the YAML has no block."""
        block = self.raw.get("robustness")
        if block is None:
            return None
        from training.robustness import RobustnessGrid

        return RobustnessGrid.from_dict(block, {"period_s": self.period_us * 1e-6},
                                        f"{self.path or self.name}: robustness")


def load_rig(name_or_path: str | Path) -> RigSpec:
    """A rig by name (gym-inverted-pendulum, desktop-cartpole) or by path to its YAML."""

    p = Path(name_or_path)
    if not p.is_file():
        p = RIGS / f"{name_or_path}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in RIGS.glob("*.yaml")))
        raise BpdError(f"no rig {str(name_or_path)!r} (known: {known}; or give a YAML path)")
    raw, sources = read_rig_yaml(p)
    spec = _check_rig(raw, p)
    spec.sources = sources
    _check(spec, p)
    if spec.raw.get("randomization") is not None:
        from training.envs import check_randomization
        check_randomization(spec.raw["randomization"], f"{p}: not a valid rig description")
    _ = spec.robustness  # a bad robustness block is refused when the rig is read
    return spec


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a rig's name reaches C, MuJoCo XML and file names
PLANT_POSITIONS = {"gym-inverted-pendulum": 2, "cartpole": 2, "furuta": 2}  # position sensors (joints) of each plant
_CARTPOLE_KEYS = ("cart_mass", "pole_mass", "pole_length", "track", "physics_timestep")  # > 0
_CARTPOLE_NONNEG = ("cart_friction", "pole_friction")
_FURUTA_KEYS = {  # key: strictly positive (else at least 0)
    "motor": {"resistance": True, "torque_constant": True, "back_emf_constant": False, "rotor_inertia": False},
    "arm": {"mass": True, "length": True, "damping": False, "coulomb": False},
    "pendulum": {"mass": True, "length": True, "damping": False, "coulomb": False},
}


# Every key a rig YAML may hold, at its top level and in limits, sensors and serial: a misspelt one
# (watchdog_tick) would otherwise leave its default in force without a word.
RIG_KEYS = frozenset({
    "name", "plant", "period_us", "physics_timestep", "units", "envs", "cart_mass", "pole_mass", "pole_length",
    "cart_friction", "pole_friction", "track", "reset_noise", "max_episode_steps", "frame_skip", "initial_qpos",
    "actuators", "sensors", "limits", "watchdog_ticks", "randomization", "robustness", "serial", "wiring", "handover",
    "task", "task_spec", "motor", "arm", "pendulum"})
SECTION_KEYS = {"limits": frozenset({"action", "position", "angle", "position_index", "angle_index"}),
                "sensors": frozenset({"measured_velocity", "counts_per_unit", "noise_std", "velocity_filter_hz"}),
                "serial": frozenset({"baud"}), "units": frozenset({"position", "angle", "action"})}


def _unknown_key(block: dict, known: frozenset, where: str) -> str | None:
    """The first key of block that is not known, with the known key it is closest to, if any."""
    import difflib

    for key in block:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            return f"unknown key {where}{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    return None


def _check_rig(raw: object, p: Path) -> RigSpec:
    """A rig description with every key present, every number finite and in range: or one line."""
    from firmware_host.wire.spec import MAX_OBS

    def bad(msg: str) -> BpdError:
        return BpdError(f"{p}: not a valid rig description: {msg}")

    def number(v, key: str, low: float | None = None, strict: bool = True) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad(f"{key} must be a finite number (got {v!r})")
        if low is not None and (v <= low if strict else v < low):
            raise bad(f"{key} must be {'above' if strict else 'at least'} {low:g} (got {v!r})")
        return float(v)

    if not isinstance(raw, dict):
        raise bad("expected a mapping of keys")
    for key in ("name", "plant", "period_us", "limits", "sensors"):
        if key not in raw:
            raise bad(f"missing key {key!r}")
    if why := _unknown_key(raw, RIG_KEYS, ""):
        raise bad(why)
    envs = raw.get("envs", [])
    if not isinstance(envs, list) or not all(isinstance(e, str) and e for e in envs):
        raise bad(f"envs must be a list of environment ids (got {str(envs)[:40]!r})")
    if not isinstance(raw["name"], str) or not NAME.fullmatch(raw["name"]):
        raise bad(f"name must be 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit "
                  f"(got {str(raw['name'])[:40]!r})")
    if not isinstance(raw["plant"], str) or raw["plant"] not in PLANT_POSITIONS:
        raise BpdError(f"{p}: unknown plant {str(raw['plant'])[:40]!r}")
    period = number(raw["period_us"], "period_us", 50, strict=False)
    if period != int(period) or period > 10_000_000:
        raise bad(f"period_us must be a whole number of microseconds up to 10 s (got {raw['period_us']!r})")
    lim, sc = raw["limits"], raw["sensors"]
    if not isinstance(lim, dict) or not isinstance(sc, dict):
        raise bad("limits and sensors must be mappings")
    for section, mapping in (("limits", lim), ("sensors", sc)):
        if why := _unknown_key(mapping, SECTION_KEYS[section], f"{section}."):
            raise bad(why)
    units = raw.get("units", {})  # names of the units the view, the tick log's labels and the wiring table show
    if not isinstance(units, dict) or not all(isinstance(u, str) for u in units.values()):
        raise bad(f"units must map position, angle and action to their names (got {str(units)[:40]!r})")
    if why := _unknown_key(units, SECTION_KEYS["units"], "units."):
        raise bad(why)
    for key in ("action", "position", "angle"):
        if key not in lim:
            raise bad(f"missing key limits.{key}")
        number(lim[key], f"limits.{key}", 0)
    for key in ("position_index", "angle_index"):
        if key in lim and (isinstance(lim[key], bool) or not isinstance(lim[key], int)):
            raise bad(f"limits.{key} must be a whole number (got {str(lim[key])[:40]!r})")
    if "counts_per_unit" not in sc or "measured_velocity" not in sc:
        raise bad("sensors needs counts_per_unit and measured_velocity")
    if not isinstance(sc["measured_velocity"], bool):
        raise bad(f"sensors.measured_velocity must be true or false (got {str(sc['measured_velocity'])[:40]!r})")
    cpu = sc["counts_per_unit"]
    if not isinstance(cpu, list) or not cpu:
        raise bad(f"sensors.counts_per_unit must list one value per position sensor (got {cpu!r})")
    if 2 * len(cpu) > MAX_OBS:
        raise bad(f"{len(cpu)} position sensors give {2 * len(cpu)} observations, more than the wire's {MAX_OBS}")
    want = len(cpu)
    for i, c in enumerate(cpu):
        number(c, f"sensors.counts_per_unit[{i}]", 0, strict=False)
    noise = sc.get("noise_std", [0.0] * (2 * want))
    if not isinstance(noise, list) or not noise or len(noise) > 2 * want:
        raise bad(f"sensors.noise_std must list at most {2 * want} values")
    for i, x in enumerate(noise):
        number(x, f"sensors.noise_std[{i}]", 0, strict=False)
    if "velocity_filter_hz" in sc:
        vf = sc["velocity_filter_hz"]
        for i, x in enumerate(vf if isinstance(vf, list) else [vf]):
            number(x or 0, f"sensors.velocity_filter_hz[{i}]", 0, strict=False)
    acts = raw.get("actuators", 1)
    if acts != 1 or acts > MAX_ACT:
        raise bad(f"actuators must be 1 for the {raw['plant']} plant (got {acts!r})")
    for key, low in (("watchdog_ticks", 1), ("max_episode_steps", 1), ("frame_skip", 1)):
        if key in raw:
            v = number(raw[key], key, low, strict=False)
            if v != int(v) or v > 1_000_000_000:
                raise bad(f"{key} must be a whole number (got {raw[key]!r})")
            if key == "watchdog_ticks" and v > 65_535:
                raise bad(f"watchdog_ticks must be at most 65535, the wire's and the firmware's 16 bits (got "
                          f"{raw[key]!r})")
    if "reset_noise" in raw:
        number(raw["reset_noise"], "reset_noise", 0, strict=False)
    if raw["plant"] == "cartpole":
        for key in _CARTPOLE_KEYS + _CARTPOLE_NONNEG:
            if key not in raw:
                raise bad(f"missing key {key!r} (the cartpole plant needs it)")
            number(raw[key], key, 0, strict=key in _CARTPOLE_KEYS)
    if raw["plant"] == "furuta":
        if "physics_timestep" not in raw:
            raise bad("missing key 'physics_timestep' (the furuta plant needs it)")
        number(raw["physics_timestep"], "physics_timestep", 0)
        for part, keys in _FURUTA_KEYS.items():
            block = raw.get(part)
            if not isinstance(block, dict):
                raise bad(f"{part} must be a mapping of {', '.join(keys)} (the furuta plant needs it)")
            for key, strict in keys.items():
                if key not in block:
                    raise bad(f"missing key {part}.{key}")
                if number(block[key], f"{part}.{key}", 0, strict=strict) > 1e6:
                    raise bad(f"{part}.{key} must be at most 1e6 (got {block[key]!r})")
    for key in ("physics_timestep", "track", "pole_length", "cart_mass", "pole_mass"):
        if key in raw and number(raw[key], key) > 1e6:
            raise bad(f"{key} must be at most 1e6 (got {raw[key]!r})")
    steps = period * 1e-6 / float(raw.get("physics_timestep", period * 1e-6))  # the plant's steps per tick
    if round(steps) < 1 or abs(steps - round(steps)) > 1e-6 * steps:
        raise bad(f"physics_timestep {raw['physics_timestep']!r} s is not the period ({period:g} us) over a whole "
                  f"number of steps ({steps:.3g}): the plant would run at another speed than the device's clock")
    if "initial_qpos" in raw:
        q = raw["initial_qpos"]
        if not isinstance(q, list) or len(q) != len(cpu):
            raise bad(f"initial_qpos must list one position per sensor ({len(cpu)}), got {str(q)[:40]!r}")
        for i, x in enumerate(q):
            number(x, f"initial_qpos[{i}]")
    if "wiring" in raw:
        check_wiring(raw["wiring"], cpu, bool(sc["measured_velocity"]), bad)
        for i, stop in enumerate(raw["wiring"].get("end_stops", [])):  # a stop the cart cannot reach never closes
            if "track" in raw and abs(stop["at"]) >= float(raw["track"]):
                raise bad(f"wiring.end_stops[{i}].at {stop['at']} is not inside the track (+-{raw['track']} m): "
                          "the cart would never close it")
    if raw.get("task") is not None or "task_spec" in raw:  # a rig without a task is a balance rig
        check_task(raw, bad, number, _unknown_key)
    _check_position_limit(raw, bad)
    baud = (raw.get("serial") or {}).get("baud", DEFAULT_BAUD) if isinstance(raw.get("serial", {}), dict) else None
    if baud is None:
        raise bad("serial must be a mapping")
    if why := _unknown_key(raw.get("serial") or {}, SECTION_KEYS["serial"], "serial."):
        raise bad(why)
    number(baud, "serial.baud", 0)
    return RigSpec(str(raw["name"]), raw["plant"], int(period), raw, p.resolve())


def _check_position_limit(raw: dict, bad) -> None:
    """The firmware's position limit ends a run before the cart reaches its hard stops (`track`) and before an end
    stop closes: the switches are the backstop, not the limit."""
    pos = float(raw["limits"]["position"])
    if "track" in raw and pos >= float(raw["track"]):
        raise bad(f"limits.position {pos:g} is not inside the track (+-{raw['track']} m): the firmware would stop "
                  "the cart only after it hits the hard stops; set it inside")
    stops = [abs(float(s["at"])) for s in (raw.get("wiring") or {}).get("end_stops", [])]
    if stops and pos >= min(stops):
        raise bad(f"limits.position {pos:g} is not inside the end stops (closing at +-{min(stops):g}): every run "
                  "would end on a switch; set it inside, the switches are the backstop")


def _check(spec: RigSpec, p: Path) -> None:
    """Sizes and indices every consumer (C header, sim, host) relies on."""
    from firmware_host.wire.spec import MAX_OBS

    problems = []
    if not 1 <= spec.obs_dim <= MAX_OBS:
        problems.append(f"{spec.n_pos} position sensors give {spec.obs_dim} observations (1..{MAX_OBS})")
    if not 1 <= spec.act_dim <= MAX_ACT:
        problems.append(f"{spec.act_dim} actuators (1..{MAX_ACT})")
    if len(spec.velocity_filter_hz) != spec.n_pos:
        problems.append("velocity_filter_hz needs one value per position sensor")
    for k in ("pos_index", "angle_index"):
        if not 0 <= getattr(spec, k) < spec.obs_dim:
            problems.append(f"{k} outside the observation")
    h = spec.raw.get("handover")
    if h is not None:
        b, ai = (h.get("bounds"), h.get("angle_index", spec.angle_index)) if isinstance(h, dict) else (None, None)
        if (not isinstance(b, list) or len(b) != spec.obs_dim
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in b)):
            problems.append(f"handover.bounds must list {spec.obs_dim} positive numbers, one per observation")
        if isinstance(ai, bool) or not isinstance(ai, int) or not 0 <= ai < spec.obs_dim:
            problems.append("handover.angle_index outside the observation")
    q, s = spec.raw.get("initial_qpos") or [0.0] * spec.n_pos, spec.reset_noise
    for i, key in ((spec.pos_index, "position"), (spec.angle_index, "angle")):  # where every run starts (Plant)
        if 0 <= i < len(q) and abs(float(q[i])) + s >= float(spec.limits[key]) > 0:
            problems.append(f"a run starts at {float(q[i]):+.4g} +- {s:g} (initial_qpos[{i}], reset_noise), not inside "
                            f"limits.{key} {spec.limits[key]:g}: every run would stop at its first tick")
    if (spec.period_us <= 0 or spec.watchdog_ticks <= 0
            or min(spec.limits[k] for k in ("action", "position", "angle")) <= 0):
        problems.append("period, watchdog and limits must be positive")
    if problems:
        raise BpdError(f"{p}: " + "; ".join(problems))


# ------------------------------------------------------------------ plant


def _cartpole_xml(r: dict, scale: dict) -> str:
    m_cart = r["cart_mass"] * scale.get("mass", 1.0)
    m_pole = r["pole_mass"] * scale.get("mass", 1.0)
    fr = r["cart_friction"] * scale.get("friction", 1.0)
    lim = r["limits"]["action"]
    return f"""<mujoco model="{r['name']}">
  <option timestep="{r['physics_timestep']}" integrator="RK4"/>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" limited="true" range="-{r['track']} {r['track']}"
             damping="{fr}"/>
      <geom type="box" size="0.04 0.03 0.02" mass="{m_cart}"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="{r['pole_friction'] * scale.get('friction', 1.0)}"/>
        <geom type="capsule" fromto="0 0 0 0 0 {r['pole_length'] * scale.get('length', 1.0)}" size="0.004"
              mass="{m_pole}"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slider" gear="{scale.get('gain', 1.0)}" ctrllimited="true" ctrlrange="-{lim} {lim}"/>
  </actuator>
</mujoco>"""


class Plant:
    """The physical system: MuJoCo model, physics steps per control tick, sensors."""

    def __init__(self, spec: RigSpec, scale: dict | None = None) -> None:
        import mujoco

        self.mj = mujoco
        self.spec = spec
        if spec.plant == "gym-inverted-pendulum":
            xml_path = Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "inverted_pendulum.xml"
            self.model = mujoco.MjModel.from_xml_path(str(xml_path))
            self.substeps = int(spec.raw.get("frame_skip", 2))
        else:
            if spec.plant == "furuta":
                from firmware_host.rig.plants.furuta import furuta_xml

                xml = furuta_xml(spec.raw, scale)
            else:
                xml = _cartpole_xml(spec.raw, scale or {})
            try:
                self.model = mujoco.MjModel.from_xml_string(xml)
            except ValueError as e:  # MuJoCo's own refusal of physical nonsense (a size, a mass)
                raise BpdError(f"rig {spec.name}: MuJoCo refuses the plant: "
                               f"{' '.join(str(e).split())[:120]}") from None
            self.substeps = max(1, round(spec.period_us * 1e-6 / self.model.opt.timestep))
        self.data = mujoco.MjData(self.model)
        self.init_qpos = self.data.qpos.copy()
        if "initial_qpos" in spec.raw:  # e.g. a swing-up rig starts hanging
            self.init_qpos[:] = np.asarray(spec.raw["initial_qpos"], float)
        self.init_qvel = self.data.qvel.copy()
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.mj.mj_resetData(self.model, self.data)
        s = self.spec.reset_noise
        self.data.qpos[:] = self.init_qpos + self.rng.uniform(-s, s, self.model.nq)
        self.data.qvel[:] = self.init_qvel + self.rng.uniform(-s, s, self.model.nv)
        self.mj.mj_forward(self.model, self.data)

    def substep(self, u: np.ndarray) -> None:
        self.data.ctrl[:] = u
        self.mj.mj_step(self.model, self.data)

    def state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def sensors(self) -> np.ndarray:
        """Raw readings as the board would deliver them: noisy, quantised encoder counts or values."""
        sc = self.spec.sensors
        n = self.model.nq
        noise = np.asarray(sc.get("noise_std", [0] * (2 * n)), float)
        x = self.state()[: 2 * n if sc["measured_velocity"] else n].copy()
        x += self.rng.normal(0, 1, len(x)) * noise[: len(x)] if noise.any() else 0.0
        cpu = np.asarray(sc["counts_per_unit"], float)
        enc = cpu > 0
        x[:n][enc] = np.round(x[:n][enc] * cpu[enc])
        return x.astype(np.float32)


class ObservationFilter:
    """What the firmware computes from raw sensors (bpd_fw.c build_observation), for the Gym env."""

    def __init__(self, spec: RigSpec) -> None:
        self.cpu = np.asarray(spec.counts_per_unit, np.float32)
        self.measured = spec.measured_velocity
        dt = spec.period_us * 1e-6
        hz = np.asarray(spec.velocity_filter_hz, np.float32)
        wc = np.float32(2 * math.pi * dt) * hz
        self.a = np.where(hz > 0, wc / (1 + wc), 1.0).astype(np.float32)  # per sensor, as the firmware
        self.dt = dt
        self.prev: np.ndarray | None = None
        self.vel = np.zeros(len(self.cpu), np.float32)

    def reset(self) -> None:
        self.prev = None
        self.vel[:] = 0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        n = len(self.cpu)
        pos = np.where(self.cpu > 0, raw[:n] / np.where(self.cpu > 0, self.cpu, 1), raw[:n]).astype(np.float32)
        if self.measured:
            vel = raw[n:2 * n]
        else:
            if self.prev is not None:
                self.vel = self.vel + self.a * ((pos - self.prev) / self.dt - self.vel)
            vel = self.vel
            self.prev = pos
        return np.concatenate([pos, vel]).astype(np.float32)


# ------------------------------------------------------------------ the Gymnasium environment


def randomization(rig: str | Path) -> tuple[str, dict[str, tuple[float, float]]]:
    """The name of a rig and the ranges of its domain randomisation (its YAML's `randomization`
    block), checked."""
    from training.envs import check_randomization

    spec = load_rig(rig)  # checks the block where there is one
    r = spec.raw.get("randomization")
    if r is None:
        raise BpdError(f"rig {spec.name!r} has no randomization block")
    return spec.name, check_randomization(r, f"rig {spec.name}")


class RigEnv(gym.Env):
    """The rig's plant and sensing as an environment: reward 1 per tick upright, episode ends at
    the rig's angle or position limit, truncated at max_episode_steps."""

    metadata = {"render_modes": []}
    action_space: gym.spaces.Box
    observation_space: gym.spaces.Box

    def __init__(self, rig: str = "desktop-cartpole", randomize: bool = False, period_us: int | None = None) -> None:
        self.spec_rig = load_rig(rig)
        if period_us:
            self.spec_rig.period_us = int(period_us)
        self.randomize = randomize
        lim = self.spec_rig.limits
        self.action_space = gym.spaces.Box(-lim["action"], lim["action"], (self.spec_rig.act_dim,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.spec_rig.obs_dim,), np.float32)
        self.plant = Plant(self.spec_rig)
        self.filter = ObservationFilter(self.spec_rig)
        self.max_steps = int(self.spec_rig.raw.get("max_episode_steps", 1000))
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self.randomize and self.spec_rig.plant == "cartpole":
            r = self.spec_rig.raw["randomization"]
            scale = {"mass": self.np_random.uniform(*r["mass_scale"]),
                     "friction": self.np_random.uniform(*r["friction_scale"]),
                     "gain": self.np_random.uniform(*r["motor_gain"])}
            self.plant = Plant(self.spec_rig, scale)
        self.plant.reset(int(self.np_random.integers(2**31)))
        self.filter.reset()
        self.t = 0
        return self.filter(self.plant.sensors()), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        u = np.clip(np.asarray(action, np.float64).reshape(-1), self.action_space.low, self.action_space.high)
        for _ in range(self.plant.substeps):
            self.plant.substep(u)
        self.t += 1
        obs = self.filter(self.plant.sensors())
        lim = self.spec_rig.limits
        x = self.plant.state()
        r = self.spec_rig  # the state is laid out like the observation: positions, then velocities
        terminated = bool(not np.isfinite(x).all() or abs(x[r.pos_index]) > lim["position"]
                          or abs(x[r.angle_index]) > lim["angle"])
        return obs, 1.0, terminated, self.t >= self.max_steps, {}


SWINGUP_RIGS = ("rotary-pendulum", "desktop-cartpole-swingup")


def _register() -> None:
    for name in ("desktop-cartpole", "gym-inverted-pendulum"):
        env_id = f"bpd/{name}-v0"
        if env_id not in gym.registry:
            # by name, not the class: a spec whose entry point is a callable does not serialise (a Minari dataset's)
            gym.register(env_id, entry_point=f"{__name__}:RigEnv", kwargs={"rig": name})
    # swing-up rigs: the nominal plant, and a -dr variant with domain randomisation for training
    for name in SWINGUP_RIGS:
        for suffix, randomize in (("", False), ("-dr", True)):
            env_id = f"bpd/{name}{suffix}-v0"
            if env_id not in gym.registry:
                gym.register(env_id, entry_point="firmware_host.rig.swingup:SwingUpEnv",
                             kwargs={"rig": name, "randomize": randomize})


_register()
