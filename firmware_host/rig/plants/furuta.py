"""The rotary (Furuta) pendulum: a DC motor turns a horizontal arm, a free pendulum hangs from the
arm's tip. Angles are measured from upright: the arm angle theta about the vertical, the pendulum
angle alpha about the arm (alpha = 0 upright, +-pi hanging).

The motor is driven by a voltage. With the armature inductance neglected (its time constant is
well under a millisecond on a desktop unit), the current is i = (V - k_m * theta_dot) / R and the
torque k_t * i, so

    tau = (k_t / R) * V - (k_t * k_m / R) * theta_dot

which MuJoCo represents exactly: an actuator with gear k_t / R on the arm joint and back-EMF as
extra viscous damping k_t * k_m / R. The rotor inertia is the joint's armature; viscous and
Coulomb friction are the joints' damping and frictionloss. `FurutaParams.linearised()` is the
closed-form model about upright that the classical controller's gains are computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

G = 9.81
ROD_RADIUS = 0.003  # m: the rods' thickness only sets their small inertia about their own axis


@dataclass(frozen=True)
class FurutaParams:
    """Physical parameters (SI units) of a desktop rotary pendulum."""

    resistance: float          # armature resistance R, ohm
    torque_constant: float     # k_t, N m / A
    back_emf_constant: float   # k_m, V s / rad
    rotor_inertia: float       # kg m^2, on the arm axis
    arm_mass: float            # kg
    arm_length: float          # m: arm axis to the pendulum's pivot
    arm_damping: float         # viscous, N m s / rad
    arm_coulomb: float         # Coulomb friction torque, N m
    pend_mass: float           # kg
    pend_length: float         # m: full length, centre of mass at half
    pend_damping: float        # N m s / rad
    pend_coulomb: float        # N m

    @classmethod
    def from_rig(cls, raw: dict, scale: dict | None = None) -> FurutaParams:
        """Parameters from a rig description, each scaled by `scale` (mass, length, friction, gain)."""
        s = scale or {}
        m, a, p = raw["motor"], raw["arm"], raw["pendulum"]
        fm, fl, ff, fg = (float(s.get(k, 1.0)) for k in ("mass", "length", "friction", "gain"))
        return cls(resistance=m["resistance"], torque_constant=m["torque_constant"] * fg,
                   back_emf_constant=m["back_emf_constant"], rotor_inertia=m["rotor_inertia"],
                   arm_mass=a["mass"] * fm, arm_length=a["length"] * fl, arm_damping=a["damping"] * ff,
                   arm_coulomb=a["coulomb"] * ff, pend_mass=p["mass"] * fm, pend_length=p["length"] * fl,
                   pend_damping=p["damping"] * ff, pend_coulomb=p["coulomb"] * ff)

    def scaled(self, **factors: float) -> FurutaParams:
        return replace(self, **{k: getattr(self, k) * v for k, v in factors.items()})

    # -- derived quantities ------------------------------------------------------------------
    @property
    def torque_per_volt(self) -> float:
        return self.torque_constant / self.resistance

    @property
    def back_emf_damping(self) -> float:
        return self.torque_constant * self.back_emf_constant / self.resistance

    @property
    def arm_inertia(self) -> float:
        """The arm as a uniform rod turning about its centre (the public QUBE-Servo 2 model's J_r)."""
        return self.arm_mass * self.arm_length ** 2 / 12

    @property
    def pend_inertia_com(self) -> float:
        """Pendulum about its centre of mass, perpendicular to the rod (uniform rod)."""
        return self.pend_mass * self.pend_length ** 2 / 12

    @property
    def pend_inertia_axial(self) -> float:
        """Pendulum about its own long axis (a solid rod of ROD_RADIUS)."""
        return self.pend_mass * ROD_RADIUS ** 2 / 2

    @property
    def pend_inertia_pivot(self) -> float:
        """Pendulum about its pivot: J_com + m (L/2)^2."""
        return self.pend_inertia_com + self.pend_mass * (self.pend_length / 2) ** 2

    def motor_torque(self, volts: float, arm_velocity: float) -> float:
        """Torque on the arm from the motor at a given voltage and speed (no friction)."""
        return self.torque_per_volt * volts - self.back_emf_damping * arm_velocity

    def energy(self, alpha: float, alpha_dot: float) -> float:
        """Pendulum energy about its pivot, zero at rest upright: J_p alpha_dot^2 / 2 + m g l (cos alpha - 1).
        Hanging at rest it is -2 m g l (l = L/2)."""
        lc = self.pend_length / 2
        return 0.5 * self.pend_inertia_pivot * alpha_dot ** 2 + self.pend_mass * G * lc * (math.cos(alpha) - 1.0)

    def arm_equivalent_inertia(self) -> float:
        """Inertia the motor sees with the pendulum upright: rotor, arm, pendulum as a point mass
        on the arm tip, plus the pendulum's axial inertia."""
        return (self.rotor_inertia + self.arm_inertia + self.pend_mass * self.arm_length ** 2
                + self.pend_inertia_axial)

    def linearised(self) -> tuple[np.ndarray, np.ndarray]:
        """Continuous-time model x' = A x + B V about upright at rest, x = [theta, alpha, theta', alpha'].

        Lagrangian of the arm (J_a = rotor + arm) and the pendulum (mass m, centre at l = L/2 from its
        pivot, J_p about the pivot, J_z about its long axis) on an arm of length r, alpha from upright:
            T = 1/2 (J_a + m r^2 + J_z cos^2 a + J_p sin^2 a) th'^2 - m r l cos(a) th' a' + 1/2 J_p a'^2
            V = m g l cos(a)
        Linearised at a = 0: M q'' + D q' + K q = B_u V with
            M = [[J_a + m r^2 + J_z, -m r l], [-m r l, J_p]], K = [[0, 0], [0, -m g l]],
            D = diag(b_arm + k_t k_m / R, b_pend), B_u = [k_t / R, 0]."""
        r, lc, m = self.arm_length, self.pend_length / 2, self.pend_mass
        M = np.array([[self.arm_equivalent_inertia(), -m * r * lc], [-m * r * lc, self.pend_inertia_pivot]])
        K = np.array([[0.0, 0.0], [0.0, -m * G * lc]])
        D = np.diag([self.arm_damping + self.back_emf_damping, self.pend_damping])
        Bu = np.array([self.torque_per_volt, 0.0])
        Minv = np.linalg.inv(M)
        A = np.zeros((4, 4))
        A[:2, 2:] = np.eye(2)
        A[2:, :2] = -Minv @ K
        A[2:, 2:] = -Minv @ D
        B = np.zeros((4, 1))
        B[2:, 0] = Minv @ Bu
        return A, B


def furuta_xml(raw: dict, scale: dict | None = None) -> str:
    """The MuJoCo model of a rotary pendulum rig description (`plant: furuta`), optionally scaled."""
    p = FurutaParams.from_rig(raw, scale)
    r, L = p.arm_length, p.pend_length
    ia = p.arm_inertia
    ip, iz = p.pend_inertia_com, p.pend_inertia_axial
    arm_tiny = p.arm_mass * ROD_RADIUS ** 2 / 2
    lim = raw["limits"]["action"]
    # The arm turns about z through its centre; the pendulum hangs from (r, 0, 0) and swings about
    # the arm's axis (x). qpos = [theta, alpha], alpha = 0 with the pendulum pointing up.
    return f"""<mujoco model="{raw['name']}">
  <option timestep="{raw['physics_timestep']}" integrator="RK4" gravity="0 0 -{G}"/>
  <worldbody>
    <body name="arm">
      <joint name="arm" type="hinge" axis="0 0 1" damping="{p.arm_damping + p.back_emf_damping!r}"
             frictionloss="{p.arm_coulomb!r}" armature="{p.rotor_inertia!r}"/>
      <inertial pos="0 0 0" mass="{p.arm_mass!r}" diaginertia="{arm_tiny!r} {ia!r} {ia!r}"/>
      <geom type="capsule" fromto="{-r / 2!r} 0 0 {r!r} 0 0" size="{ROD_RADIUS}" contype="0" conaffinity="0"/>
      <body name="pendulum" pos="{r!r} 0 0">
        <joint name="pendulum" type="hinge" axis="1 0 0" damping="{p.pend_damping!r}"
               frictionloss="{p.pend_coulomb!r}"/>
        <inertial pos="0 0 {L / 2!r}" mass="{p.pend_mass!r}" diaginertia="{ip!r} {ip!r} {iz!r}"/>
        <geom type="capsule" fromto="0 0 0 0 0 {L!r}" size="{ROD_RADIUS}" contype="0" conaffinity="0"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="motor" joint="arm" gear="{p.torque_per_volt!r}" ctrllimited="true" ctrlrange="-{lim} {lim}"/>
  </actuator>
</mujoco>"""
