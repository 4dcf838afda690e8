"""The classical controller a lab runs on a rotary pendulum: energy-based swing-up with a switch to
LQR balance near upright. Gains come from the rig's linearised model (FurutaParams.linearised),
discretised at the rig's period and solved with scipy's discrete algebraic Riccati solver.

The same controller exists in C (c_classical/policy_classical.c) behind the policy kernel's entry
point, `bpd_policy_run(&bpd_model, obs, action, scratch)`: `export_classical` writes an export
directory the firmware builds, the simulated rig runs in device mode and `bpd bench`-style
measurements count, exactly like an exported network.

    python -c "from firmware_host.rig.classical import design; print(design('rotary-pendulum').gains)"
    bpd classical export --rig rotary-pendulum --out classical_export
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import write_json, write_text
from firmware_host.rig import load_rig
from firmware_host.rig.plants.furuta import FurutaParams, G

C_SOURCE = Path(__file__).resolve().parents[1] / "c" / "classical" / "policy_classical.c"

# Weights of the LQR design: Q on [theta, alpha, theta', alpha'], R on the voltage; the arm angle
# weighted above the rest, a common starting point of rotary-pendulum balance labs.
LQR_Q = (5.0, 1.0, 1.0, 1.0)
LQR_R = 1.0
SWITCH_DEG = 30.0  # the LQR catches within this of upright, the swing-up acts outside


def lqr_continuous(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """K minimising the integral of x'Qx + u'Ru for x' = Ax + Bu, u = -Kx (continuous Riccati)."""
    from scipy.linalg import solve_continuous_are

    P = solve_continuous_are(A, B, Q, R)
    return np.linalg.solve(R, B.T @ P)


def discretise(A: np.ndarray, B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order-hold discretisation (the action is held for one tick), by the block exponential."""
    from scipy.linalg import expm

    n, m = B.shape
    M = np.zeros((n + m, n + m))
    M[:n, :n], M[:n, n:] = A, B
    E = expm(M * dt)
    return E[:n, :n], E[:n, n:]


def lqr_discrete(Ad: np.ndarray, Bd: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """K minimising the sum of x'Qx + u'Ru for x+ = Ad x + Bd u, u = -Kx (discrete Riccati)."""
    from scipy.linalg import solve_discrete_are

    P = solve_discrete_are(Ad, Bd, Q, R)
    return np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)


@dataclass
class ClassicalDesign:
    """Everything the controller needs, in the units of the rig's observation and action."""

    gains: list[float]        # LQR: V = -K [theta, wrap(alpha), theta', alpha']
    switch_angle: float       # rad: LQR within this of upright, swing-up outside
    energy_gain: float        # (rad/s^2) per J: arm acceleration per unit energy error
    energy_ref: float         # J: the energy swing-up drives towards (0 is upright at rest)
    accel_max: float          # rad/s^2: the swing-up's arm acceleration saturation
    arm_kp: float             # rad/s^2 per rad: keeps the arm near centre during swing-up
    arm_kd: float             # rad/s^2 per rad/s
    ja: float                 # rotor + arm + pendulum mass at the arm tip, kg m^2
    jp: float                 # pendulum about its pivot, kg m^2
    jz: float                 # pendulum about its long axis, kg m^2
    mrl: float                # m r l, kg m^2 (pendulum mass, arm length, pivot to centre of mass)
    mgl: float                # m g l, N m
    arm_damping: float        # N m s / rad (viscous, without back-EMF)
    pend_damping: float       # N m s / rad
    volts_per_torque: float   # R / k_t
    back_emf: float           # k_m, V s / rad
    action_limit: float       # V
    period_s: float
    closed_loop_poles: list[complex]

    def to_json(self) -> dict:
        d = asdict(self)
        d["closed_loop_poles"] = [[p.real, p.imag] for p in self.closed_loop_poles]
        return d


def design(rig: str = "rotary-pendulum", q: tuple = LQR_Q, r: float = LQR_R) -> ClassicalDesign:
    """Energy swing-up + discrete LQR for a rotary pendulum rig, from its nominal parameters."""
    spec = load_rig(rig)
    if spec.plant != "furuta":
        raise BpdError(f"the classical controller is designed for rotary pendulum rigs (plant: furuta), "
                       f"not {spec.plant!r}")
    p = FurutaParams.from_rig(spec.raw)
    dt = spec.period_us * 1e-6
    K, poles = _balance_gains(spec.name, p, dt, np.diag(q), np.array([[r]]))
    lc = p.pend_length / 2
    mgl = p.pend_mass * G * lc
    accel_max = 60.0
    energy_ref = 0.13 * mgl  # a little above upright at rest: friction takes some on the way up
    return ClassicalDesign(
        gains=[float(k) for k in K[0]], switch_angle=math.radians(SWITCH_DEG),
        energy_gain=accel_max / energy_ref, energy_ref=energy_ref, accel_max=accel_max, arm_kp=40.0, arm_kd=4.0,
        ja=p.rotor_inertia + p.arm_inertia + p.pend_mass * p.arm_length ** 2, jp=p.pend_inertia_pivot,
        jz=p.pend_inertia_axial, mrl=p.pend_mass * p.arm_length * lc, mgl=mgl, arm_damping=p.arm_damping,
        pend_damping=p.pend_damping, volts_per_torque=1.0 / p.torque_per_volt, back_emf=p.back_emf_constant,
        action_limit=float(spec.limits["action"]), period_s=dt, closed_loop_poles=[complex(z) for z in poles])


def _balance_gains(name: str, p: FurutaParams, dt: float, Q: np.ndarray, R: np.ndarray) -> tuple:
    """The discrete LQR gains and closed-loop poles of the rig's model linearised about upright, or one line saying
    why no LQR balances it: a model that overflows over one period (a pendulum that falls from upright far
    faster than the loop runs), or gains that leave a pole on or outside the unit circle (the voltage does not
    reach the pendulum, as on an arm of no length)."""
    from scipy.linalg import LinAlgError

    A, B = p.linearised()
    fall = max(float(np.max(np.linalg.eigvals(A).real)), 0.0) if np.isfinite(A).all() else math.inf
    why = ""
    with np.errstate(all="ignore"):
        Ad, Bd = discretise(A, B, dt) if math.isfinite(fall) else (A, B)
        if not (np.isfinite(Ad).all() and np.isfinite(Bd).all()):
            why = (f"its model about upright overflows over one period: the pendulum falls from upright at "
                   f"e^({fall:.3g} t), against a period of {dt:g} s")
        else:
            try:
                K = lqr_discrete(Ad, Bd, Q, R)
                poles = np.linalg.eigvals(Ad - Bd @ K)
            except (LinAlgError, ValueError) as e:
                why = f"the Riccati equation of its model about upright has no solution ({str(e).rstrip('.')})"
            else:
                if not (np.isfinite(K).all() and np.isfinite(poles).all()) or np.max(np.abs(poles)) >= 1.0:
                    why = (f"the best gains leave a closed-loop pole at |z| {np.max(np.abs(poles)):.6g}, not inside "
                           "the unit circle: the voltage cannot steer its model about upright")
    if why:
        raise BpdError(f"rig {name}: no LQR balances it: {why}; check its motor, arm and pendulum constants")
    return K, poles


class EnergyLqrController:
    """The controller in Python, on the rig's observation [theta, alpha, theta', alpha'] (alpha
    unwrapped, 0 upright). Stateless: the same observation always gives the same voltage.

    Swing-up commands an arm acceleration a = sat(k (E_ref - E) sign(alpha' cos alpha)) - arm
    centring, E the pendulum energy (zero upright at rest). The arm is light next to the pendulum's
    reaction (m r l alpha'^2 alone exceeds the motor's stall torque at full swing), so the voltage
    that realises a comes from the full inverse dynamics of the model, not from a rigid-arm gain."""

    def __init__(self, d: ClassicalDesign) -> None:
        self.d = d
        self.K = np.asarray(d.gains, np.float64)

    def energy(self, alpha: float, alpha_dot: float) -> float:
        return 0.5 * self.d.jp * alpha_dot ** 2 + self.d.mgl * (math.cos(alpha) - 1.0)

    def volts_for(self, a: float, alpha: float, theta_dot: float, alpha_dot: float) -> float:
        """Voltage that gives arm acceleration a in the model's full nonlinear dynamics."""
        d = self.d
        s, c = math.sin(alpha), math.cos(alpha)
        jpz = d.jp - d.jz
        alpha_acc = (d.mrl * c * a + jpz * s * c * theta_dot ** 2 + d.mgl * s - d.pend_damping * alpha_dot) / d.jp
        inertia = d.ja + d.jz * c * c + d.jp * s * s
        tau = (inertia * a + 2.0 * jpz * s * c * alpha_dot * theta_dot - d.mrl * c * alpha_acc
               + d.mrl * s * alpha_dot ** 2 + d.arm_damping * theta_dot)
        return d.volts_per_torque * tau + d.back_emf * theta_dot

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        d = self.d
        th, al, thd, ald = (float(v) for v in np.asarray(obs, np.float64)[:4])
        phi = (al + math.pi) % (2 * math.pi) - math.pi
        if abs(phi) < d.switch_angle:
            v = -float(self.K @ np.array([th, phi, thd, ald]))
        else:
            e = self.energy(al, ald)
            sgn = 1.0 if ald * math.cos(al) >= 0.0 else -1.0
            a = min(max(d.energy_gain * (d.energy_ref - e) * sgn, -d.accel_max), d.accel_max)
            a -= d.arm_kp * th + d.arm_kd * thd
            v = self.volts_for(a, al, thd, ald)
        return np.array([min(max(v, -d.action_limit), d.action_limit)], np.float32)


CHECK_EPISODES = 3  # of the design on the rig's nominal plant, before it is exported


def check_design(rig: str, d: ClassicalDesign, episodes: int = CHECK_EPISODES) -> dict:
    """The controller on the rig's own nominal environment, episodes 0..n-1 as `bpd evaluate` runs them (swing-up:
    the env's success, upright within its band for the last hold_s; a balance rig: no limit reached), or one line
    saying how it fails where no episode succeeds: the swing-up's constants (its arm acceleration and centring) are a
    QUBE-Servo 2 class rig's, and another rig's YAML (a heavier pendulum, a lower voltage limit) can leave a design
    that never swings up. Some successes are reported, not refused (the shipped rig's design misses a swing-up now
    and then)."""
    from firmware_host.rig import RigEnv
    from firmware_host.rig.yaml_env import make_rig_env

    spec = load_rig(rig)
    env = cast(RigEnv, make_rig_env(str(spec.path)))
    ctrl, swing = EnergyLqrController(d), spec.raw.get("task") == "swingup"
    ok, times, stops, closest, saturated, ticks = 0, [], 0, math.pi, 0, 0
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        done, terminated = False, False
        info: dict = {}
        while not done:
            u = ctrl(obs)
            saturated, ticks = saturated + int(abs(float(u[0])) >= d.action_limit), ticks + 1
            obs, _, terminated, truncated, info = env.step(u)
            closest = min(closest, abs(math.remainder(float(obs[1]), 2 * math.pi)))
            done = terminated or truncated
        stops += terminated
        if bool(info["success"]) if swing else not terminated:
            ok += 1
            times += [info["time_to_upright"]] if swing else []
    period, steps = spec.period_us * 1e-6, env.max_steps
    ts = spec.raw.get("task_spec") or {}
    rule = (f"upright within {ts['upright_band']:g} rad for the last {ts['hold_s']:g} s of {steps * period:g} s"
            if swing else f"balanced for {steps * period:g} s within the limits")
    if ok == 0:
        raise BpdError(
            f"rig {spec.name}: the energy swing-up + LQR designed from its YAML does not "
            f"{'swing up and hold' if swing else 'balance'} its simulated plant: {ok} of {episodes} episodes "
            f"{rule} (closest to upright {closest:.2f} rad, {stops} ended at a limit, the voltage at its limit on "
            f"{100 * saturated / ticks:.0f} % of ticks): its swing-up's constants (arm acceleration up to "
            f"{d.accel_max:g} rad/s^2, arm centring {d.arm_kp:g} and {d.arm_kd:g}) are a QUBE-Servo 2 class rig's; "
            f"a teacher trained on this rig (--env {_env_id(rig, spec)}) is the other way")
    return {"episodes": episodes, "successes": ok, "rule": rule,
            "time_to_upright_median_s": float(np.median(times)) if times else None}


# ------------------------------------------------------------------ LQR balance of a cart-pole


def linearise_tick(rig: str, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The rig's plant over one control tick about upright at rest (qpos 0), the action held for the
    tick's physics steps: x+ = Ad x + Bd u on the state [positions, velocities], by central differences
    of MuJoCo's own steps (any integrator; the cart-pole plant integrates with RK4, which MuJoCo's
    mjd_transitionFD does not take)."""
    import mujoco

    from firmware_host.rig import Plant

    plant = Plant(load_rig(rig))
    m, d = plant.model, plant.data
    nq, nu = m.nq, m.nu

    def tick(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:] = x[:nq], x[nq:]
        for _ in range(plant.substeps):
            plant.substep(u)
        return np.concatenate([d.qpos, d.qvel])

    x0, u0 = np.zeros(nq + m.nv), np.zeros(nu)
    Ad = np.column_stack([(tick(x0 + eps * e, u0) - tick(x0 - eps * e, u0)) / (2 * eps) for e in np.eye(len(x0))])
    Bd = np.column_stack([(tick(x0, u0 + eps * e) - tick(x0, u0 - eps * e)) / (2 * eps) for e in np.eye(nu)])
    return Ad, Bd


# Plants with a cart on a slider and a pole on a hinge, observed as [x, theta, x', theta'] (theta 0 upright).
CART_POLE_PLANTS = ("cartpole", "gym-inverted-pendulum")


class CartPoleLqr:
    """LQR balance of a cart-pole rig on its observation [x, theta, x', theta'] (theta 0 upright):
    u = -K [x, wrap(theta), x', theta'] within the force limit, K from the plant linearised over one tick
    (linearise_tick) with the rotary design's weights (LQR_Q on the cart position, the angle and their
    rates, LQR_R on the action: N on the desktop cart-pole, units of 100 N on gym-inverted-pendulum). A
    balance rig starts near upright, so no swing-up is needed: with the energy swing-up this is the rotary
    rig's energy + LQR."""

    def __init__(self, rig: str = "desktop-cartpole", q: tuple = LQR_Q, r: float = LQR_R) -> None:
        spec = load_rig(rig)
        if spec.plant not in CART_POLE_PLANTS:
            raise BpdError(f"the cart-pole LQR is designed for cart-pole rigs (plant: "
                           f"{' or '.join(CART_POLE_PLANTS)}), not {spec.plant!r}")
        Ad, Bd = linearise_tick(rig)
        self.K = lqr_discrete(Ad, Bd, np.diag(q), np.array([[r]]))[0]
        self.limit = float(spec.limits["action"])
        self.poles = np.linalg.eigvals(Ad - Bd @ self.K[None, :])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float64)[:4].copy()
        x[1] = (x[1] + math.pi) % (2 * math.pi) - math.pi
        return np.array([min(max(-float(self.K @ x), -self.limit), self.limit)], np.float32)


# ------------------------------------------------------------------ C export


# The scalar constants of bpd_classical_t, in order (policy_classical.c reads them by name).
C_FIELDS = ("switch_angle", "energy_gain", "energy_ref", "accel_max", "arm_kp", "arm_kd", "ja", "jp", "jz", "mrl",
            "mgl", "arm_damping", "pend_damping", "volts_per_torque", "back_emf", "action_limit")


def c_float(x: float) -> str:
    return f"{float(np.float32(x))!r}f"


# The names of a classical export for hand-over mode (docs/protocol.md, rule 17): its entry point, model, hash,
# weights-header guard and self-test macros under this prefix, its self-test in HANDOVER_SELFTEST, so it links
# beside a learned policy's export (whose names are bpd_*); the firmware builds look for exactly these.
HANDOVER_PREFIX = "bpd_classical"
HANDOVER_SELFTEST = "classical_selftest.h"


def _env_id(rig: str, spec) -> str:
    """The environment a classical export records (what `bpd evaluate` runs it in): a shipped rig's registered one,
    else the rig of one's own by its YAML path as given (`rig:PATH`, yaml_env.py)."""
    from firmware_host.rig import RIGS

    shipped = spec.path is not None and spec.path.resolve() == (RIGS / f"{spec.name}.yaml").resolve()
    return f"firmware_host.rig:bpd/{spec.name}-v0" if shipped else f"rig:{rig}"


def export_classical(rig: str, out: str | Path, prefix: str = "bpd") -> dict:
    """Write an export directory (policy.c/h, policy_weights.c/h, policy_config.h) running the
    classical controller through the policy kernel's entry point, named `<prefix>_policy_run`: "bpd" runs
    it as the firmware's policy, HANDOVER_PREFIX as the classical controller of hand-over mode."""
    from export.c_export import KERNEL_DIR, model_descriptor

    if prefix not in ("bpd", HANDOVER_PREFIX):
        raise BpdError(f"a classical export is named bpd or {HANDOVER_PREFIX} (got {prefix!r})")
    from bpd.io import check_output_dir

    out = Path(out)
    check_output_dir(out, "export.json", "an export directory")  # not a run directory, say
    up = prefix.upper()
    design_name = "bpd_classical" if prefix == "bpd" else f"{prefix}_design"
    d = design(rig)
    spec = load_rig(rig)
    if prefix == HANDOVER_PREFIX and (region := spec.handover) is not None \
            and (alpha := region["bounds"][region["angle_index"]]) > d.switch_angle:
        raise BpdError(f"rig {spec.name}: handover.bounds lets the learned policy act out to |alpha| {alpha:g} rad, "
                       f"beyond the LQR's catch ({math.degrees(d.switch_angle):g} deg, {d.switch_angle:.3f} rad): a "
                       "take-back there would be by the swing-up, not the LQR; bound alpha within the catch")
    checked = check_design(rig, d)  # before anything is written: a design that cannot work is no export
    out.mkdir(parents=True, exist_ok=True)
    params = json.dumps(d.to_json(), sort_keys=True)
    digest = hashlib.sha256((C_SOURCE.read_text() + params).encode()).hexdigest()
    flag = " --handover" if prefix != "bpd" else ""
    banner = (f"/* Generated - do not edit. Energy swing-up + LQR for rig {spec.name}, design {digest[:16]};\n"
              f" * regenerate with: bpd classical export --rig {rig} --out DIR{flag} */\n")  # the rig as given
    lim = d.action_limit
    c = [banner, '#include "policy_weights.h"\n',
         f'const char {prefix}_model_hash[] = "{digest}";\n',
         f"static const float bpd_low[1] = {{{c_float(-lim)}}};",
         f"static const float bpd_high[1] = {{{c_float(lim)}}};",
         "static const float bpd_safe[1] = {0.0f};",
         "static const float bpd_out_scale[1] = {1.0f};  /* clip output: unused */",
         "static const float bpd_out_offset[1] = {0.0f};\n",
         model_descriptor(prefix, 4, 1, 0, 0, "clip", arrays="bpd"),
         f"const bpd_classical_t {design_name} = {{",
         f"    {{{', '.join(c_float(k) for k in d.gains)}}},   /* LQR gains on theta, alpha, theta', alpha' */",
         *(f"    {c_float(getattr(d, f))},   /* {f} */" for f in C_FIELDS),
         "};\n"]
    h = [banner, f"#ifndef {up}_POLICY_WEIGHTS_H\n#define {up}_POLICY_WEIGHTS_H\n", "#include <stddef.h>\n",
         '#include "policy.h"\n', f"#define {up}_OBS_DIM 4\n#define {up}_ACT_DIM 1\n#define {up}_SCRATCH_FLOATS 1\n",
         f"#define BPD_CLASSICAL_RUN {prefix}_policy_run\n#define BPD_CLASSICAL_TANH {prefix}_tanh\n"
         f"#define BPD_CLASSICAL_DESIGN {design_name}\n",
         "typedef struct {\n    float k[4];\n    float " + ", ".join(C_FIELDS) + ";\n} bpd_classical_t;\n",
         f"extern const bpd_model_t {prefix}_model;\nextern const bpd_classical_t {design_name};\n"
         f"extern const char {prefix}_model_hash[];\n",
         f"int {prefix}_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch);\n"
         if prefix != "bpd" else "", "#endif\n"]
    config = [banner, "#ifndef BPD_POLICY_CONFIG_H\n#define BPD_POLICY_CONFIG_H\n#endif\n"]
    write_text(out / "policy_weights.c", "\n".join(c))
    write_text(out / "policy_weights.h", "\n".join(h))
    write_text(out / "policy_config.h", "\n".join(config))
    write_text(out / "policy.c", C_SOURCE.read_text())
    shutil.copyfile(KERNEL_DIR / "policy.h", out / "policy.h.tmp")
    (out / "policy.h.tmp").replace(out / "policy.h")
    n_const = len(d.gains) + len(C_FIELDS)
    info = {"format": "bpd-classical", "kind": "classical", "controller": "energy swing-up + discrete LQR",
            "prefix": prefix, "rig": spec.name, "env_id": _env_id(rig, spec), "obs_dim": 4,
            "act_dim": 1,
            "model_hash": digest, "runtime": "c", "params_total": n_const, "params_nonzero": n_const,
            "source_params_total": n_const, "widths": [4, 1], "design": d.to_json(),
            "lqr": {"Q": list(LQR_Q), "R": LQR_R}, "nominal_check": checked}
    info["parity"] = _classical_parity(d, out, prefix)
    info["selftest"] = _classical_selftest(d, out, banner, prefix)
    from export.verify import manifest
    info["files"] = manifest(out)
    write_json(out / "export.json", info)  # the keys trials read: obs_dim, act_dim, model_hash
    return info


def check_designed_for(export_dir: str | Path, spec) -> None:
    """A classical export is generated from its rig's YAML (design): refused, in one line, for a rig whose design is
    another (another rig, or the YAML edited since the export), as a stale generated file would be. Any other
    export passes (a learned policy of another plant is a note, not refused: nothing proves it wrong)."""
    from bpd.io import read_json
    from firmware_host.rig import RIGS

    p = Path(export_dir) / "export.json"
    info = read_json(p, "export record") if p.is_file() else None
    if not isinstance(info, dict) or info.get("format") != "bpd-classical":
        return
    now = design(str(spec.path)).to_json() if spec.plant == "furuta" else {}
    was = info.get("design")
    was = was if isinstance(was, dict) else {}
    if set(now) == set(was) and all(np.allclose(np.asarray(now[k], float), np.asarray(was[k], float), rtol=1e-6,
                                                atol=1e-12) for k in now):
        return
    if spec.plant != "furuta":  # no export for this rig would do: the controller is a rotary pendulum's
        env = str(info.get("env_id") or "")
        its = env.removeprefix("rig:") if env.startswith("rig:") else info.get("rig")  # a YAML of one's own: its path
        raise BpdError(f"{export_dir}: a classical controller of rig {info.get('rig')}, a rotary pendulum's (plant "
                       f"furuta), not of rig {spec.name} (plant {spec.plant}): give --rig {its}")
    rig = spec.name if spec.path and spec.path.parent == RIGS else spec.path
    flag = " --handover" if info.get("prefix", "bpd") != "bpd" else ""
    raise BpdError(f"{export_dir}: a classical controller designed for rig {info.get('rig')}, not for rig {spec.name} "
                   f"as its YAML is now: export it again (bpd classical export --rig {rig}{flag})")


def check_evaluated_in(export_dir: str | Path, env_id: str) -> None:
    """A classical export is evaluated (`bpd evaluate`) in an environment of the rotary pendulum rig it was designed
    for (any spelling of it, its -dr variant), or refused in one line: in another its gains are another plant's, and
    on a cart-pole it read the cart's metres as the arm's radians, each ending with a return and no word. Any other
    export passes."""
    from bpd.io import read_json
    from firmware_host.rig.yaml_env import rig_of

    p = Path(export_dir) / "export.json"
    info = read_json(p, "export record") if p.is_file() else None
    if not isinstance(info, dict) or info.get("format") != "bpd-classical":
        return
    rig = rig_of(env_id, 4, 1)
    spec = load_rig(rig) if rig is not None else None
    if spec is None or spec.plant != "furuta":
        raise BpdError(f"{export_dir}: a classical controller of rig {info.get('rig')}, a rotary pendulum's (plant "
                       f"furuta): {env_id} is no rotary pendulum rig's environment; evaluate it in its own, "
                       f"{info.get('env_id')}")
    try:
        check_designed_for(export_dir, spec)
    except BpdError:
        raise BpdError(f"{export_dir}: a classical controller designed for rig {info.get('rig')}, not for rig "
                       f"{spec.name} ({env_id}) as its YAML is now: evaluate it in {info.get('env_id')}, or export "
                       f"one for this rig (bpd classical export --rig {rig})") from None


PARITY_TOL_V = 2e-3  # volts, of a +-10 V range


def _classical_parity(d: ClassicalDesign, out: Path, prefix: str = "bpd") -> dict:
    """The compiled C controller against the Python one on fixed states off its switching surfaces
    (on a surface float32 and float64 may take different branches); refuses the export if they differ."""
    import math

    from bpd.errors import BpdError
    from export.c_export import CPolicy

    c, py = CPolicy(out, prefix=prefix), EnergyLqrController(d)
    rng = np.random.default_rng(0)
    states = [np.array([0.0, math.pi, 0.0, 0.0]), np.array([0.1, 0.05, -0.3, 0.8])]
    states += list(rng.uniform([-2, -7, -15, -25], [2, 7, 15, 25], (300, 4)))
    errs = []
    for s in states:
        s = s.astype(np.float32)
        phi = math.remainder(float(s[1]), 2 * math.pi)
        if abs(abs(phi) - d.switch_angle) < 1e-3 or abs(s[3] * math.cos(float(s[1]))) < 1e-2:
            continue
        rc, a = c.run(s)
        errs.append(abs(float(a[0]) - float(py(s)[0])) if rc == 0 else float("inf"))
    parity = {"states": len(errs), "tolerance": PARITY_TOL_V, "c_vs_python": float(max(errs)),
              "check": "compiled C controller against the Python controller", "pass": max(errs) <= PARITY_TOL_V}
    if not parity["pass"]:
        raise BpdError(f"classical export: C and Python controllers differ by {max(errs):.2e} V")
    return parity


def _classical_selftest(d: ClassicalDesign, out: Path, banner: str, prefix: str = "bpd") -> dict:
    """The boot self-test (export/selftest.py): one state in the LQR region and one in the swing-up, off the
    switching surfaces, each with the action nearest half the limit (unsaturated, and no cancellation to
    0), and the compiled controller's own actions; the tolerance is twice the parity tolerance, as for a
    float network (each build is held within it of the float64 controller)."""
    import math

    from export.c_export import CPolicy
    from export.selftest import write_selftest

    c = CPolicy(out, prefix=prefix)
    rng = np.random.default_rng(1)
    cand = rng.uniform([-1, -math.pi, -5, -10], [1, math.pi, 5, 10], (400, 4)).astype(np.float32)
    phi = np.abs(np.remainder(cand[:, 1] + math.pi, 2 * math.pi) - math.pi)
    swing = cand[(phi > d.switch_angle + 0.05) & (np.abs(cand[:, 3] * np.cos(cand[:, 1])) > 0.1)]
    lqr = np.array([[0.1, 0.05, -0.3, 0.8], [0.05, -0.1, 0.2, -0.5]], np.float32)
    obs = np.stack([g[np.argmin(np.abs(np.abs(c.act(g)[:, 0]) - d.action_limit / 2))] for g in (lqr, swing)])
    return write_selftest(out, obs, c.act(obs), 2 * PARITY_TOL_V, "classical controller (float): within twice "
                          f"its parity tolerance ({PARITY_TOL_V:g} V); one LQR state, one swing-up state", banner,
                          prefix, HANDOVER_SELFTEST if prefix != "bpd" else None)


@dataclass
class ClassicalExportConfig:
    rig: str = field("rotary-pendulum", help="rotary pendulum rig name or YAML path")
    out: str = field("classical_export", help="export directory to write")
    handover: bool = field(False, help="name it for hand-over mode (bpd_classical_*), to link beside a learned "
                           "policy: bpd rig sim/pil --classical DIR, bpd firmware build --classical DIR")
