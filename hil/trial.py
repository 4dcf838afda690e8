"""`bpd hil run`: trials on a rig over a serial port, safe on every exit path, every tick logged.

The device is the clock: it streams a STATE every tick. The host answers the newest state with an
ACTION echoing its sequence number, in every mode (the device's watchdog stops a run whose host went
silent): in host mode the action its policy computed, in device mode the state's own action, which
the device does not use; hand-over mode is device mode with the device's classical controller acting
outside the rig's handover region, and the log says which drove each tick. When several states are
waiting the host answers only the newest (skip, never catch up) and, in host mode, counts the rest as
deadline misses. A device that restarts mid-trial ends it with one line naming the restart. Per-tick
rows go to ticks.csv as they arrive (flushed every episode and every 200 rows); summary.json and plots
follow.
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bpd
from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.io import bpd_executable, check_output_dir, portable_argv, portable_path, read_json, write_json
from bpd.process import HOLD, HeldStops, die_with_parent
from bpd.view import LiveView
from firmware_host.rig import load_rig
from firmware_host.rig.classical import check_designed_for
from firmware_host.rig.sim_view import ESTOP, column_labels, device_stop
from firmware_host.wire.spec import CAPS, FLAGS, SELFTEST, STOPPED
from hil.link import DeviceFault, DeviceLink, DeviceRestarted, LinkError, check_config, check_rig_device
from hil.policy import load_host_policy
from hil.ticklog import CUT_SHORT, SIMULATED, TickLog, ViewedTickLog, handover_summary, read_ticks, timing_summary


@dataclass
class HilRunConfig:
    port: str = field(help="serial port: a device path, a pty, socket://host:port, 'sim' to start the "
                      "simulated rig (with the export's policy on the device) for this trial, or 'pil' to run the "
                      "export's Cortex-M firmware image in QEMU (processor-in-the-loop, lockstep)")
    rig: str = field(help="rig name or YAML (limits, period, units)")
    policy: str = field(help="export directory or .onnx file")
    mode: str = field("host", help="where the policy runs: host (here, the action sent every tick), device (on the "
                      "device), handover (on the device, its classical controller swinging up and taking back outside "
                      "the rig's handover region: docs/protocol.md, rule 17)", choices=("host", "device", "handover"))
    classical: str | None = field(None, help="with --port sim or pil and --mode handover: the classical export "
                                  "(`bpd classical export --handover`) built into the device beside the policy")
    episodes: int = field(1, help="episodes to run")
    out: str = field("hil_logs", help="log directory (ticks.csv, summary.json, plots)")
    runtime: str = field("onnxruntime", help="host-mode policy runtime", choices=("onnxruntime", "c"))
    period_us: int | None = field(None, help="control period override (default: the rig's)")
    steps: int | None = field(None, help="ticks per episode (default: the rig's max_episode_steps)")
    seed: int = field(0, help="seed of the first episode's plant reset (episode i uses seed + i)")
    baud: int | None = field(None, help="baud rate (default: the rig's)")
    stall_timeout: float = field(1.0, help="seconds without a state before the device counts as stalled")
    plots: bool = field(True, help="render the PNG plots after the trial")
    lockstep: bool = field(False, help="with --port sim: run the simulated rig one tick per exchange, not by the "
                           "wall clock (as `bpd rig sim --lockstep`)")
    unchecked: bool = field(False, help="run on a rig whose last `bpd rig check` failed")
    checks: str = field("rig_checks", help="directory of the `bpd rig check` results (RIG.json)")
    view: int | None = field(None, help="serve a live view of the trial on http://127.0.0.1:PORT/ (--view alone: "
                             "port 8765): state, action, tick timing, deadline misses, then the summary")
    view_linger: float = field(10.0, help="with --view: seconds at most the page stays served after the trial "
                               "for the summary to reach it (it stops once a page has it)")


def check_trial(cfg: HilRunConfig) -> tuple:
    """Everything a trial needs, checked before a rig starts or a file is written: option ranges, the
    rig, the policy (a verified export) and a log directory that is new or empty. Logs go straight into
    it (not staged) so that a trial killed outright still leaves every tick it received. Returns the
    rig and the loaded policy."""
    check_ranges(cfg, {"episodes": (1, 1_000_000), "period_us": (50, 10_000_000), "steps": (1, 100_000_000),
                       "seed": (0, 2**31 - 1), "baud": (50, 100_000_000), "stall_timeout": (0, 3600, "open")})
    out = Path(cfg.out)
    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not untouched_trial(out):
        kind = "holds a trial already" if (out / "ticks.csv").exists() else "is not empty"
        raise BpdError(f"{out}: {kind}; choose another --out (a trial never writes into an existing one)")
    spec = load_rig(cfg.rig)
    _check_handover(cfg, spec)
    if not Path(cfg.policy).is_dir():  # the simulated device builds its policy from an export directory
        d = Path(cfg.policy).parent
        give = f"--policy {d}" if (d / "export.json").is_file() else "the directory `bpd export` wrote"
        if cfg.port == "pil":  # `bpd rig pil` has nothing to build the image from
            raise BpdError(f"--port pil runs the firmware image built from an export directory, not {cfg.policy}: "
                           f"give {give}")
        if cfg.port == "sim" and cfg.mode != "host":  # `bpd rig sim` would start a device without a policy
            raise BpdError(f"--mode {cfg.mode} runs the policy on the simulated device, built from an export "
                           f"directory, not {cfg.policy}: give {give} (or --mode host to run {cfg.policy} here)")
    if cfg.port not in ("sim", "pil") and not cfg.unchecked:  # a real rig: not one whose last check failed
        from hil.check_record import refuse_unchecked
        refuse_unchecked(spec, cfg.checks)
    pol = load_host_policy(cfg.policy, cfg.runtime)
    check_designed_for(Path(cfg.policy), spec)  # a classical controller's design is its rig's, or it is refused
    if (pol.obs_dim, pol.act_dim) != (spec.obs_dim, spec.act_dim):  # before any rig or device starts
        raise BpdError(f"{cfg.policy}: the policy maps {pol.obs_dim} observations to {pol.act_dim} actions, rig "
                       f"{spec.name} {spec.obs_dim} to {spec.act_dim}: export a policy trained for this rig")
    if note := spec.plant_note(cfg.policy, pol.env_id, "the trial runs, its figures are of a policy on another "
                               "plant"):  # the same sizes, another plant: said, not refused
        print(note, file=sys.stderr)
    return spec, pol


STOP_FAILED = "stop could not be sent, the device watchdog zeroes the actuator"


def untouched_trial(out: Path) -> bool:
    """Whether out holds only a trial that ended before its first tick (the device refused it, or it was stopped
    while it began): its summary, written once it ended, says why and counts no tick, and a new trial may take the
    directory over. A trial still beginning has no summary yet: not taken."""
    if {p.name for p in out.iterdir()} != {"ticks.csv", "summary.json"}:
        return False
    try:
        s = read_json(out / "summary.json", "trial summary")
        return (isinstance(s, dict) and isinstance(s.get("timing"), dict) and s["timing"].get("ticks") == 0
                and s.get("ended", "complete") != "complete" and not read_ticks(out / "ticks.csv"))
    except BpdError:
        return False


def _check_handover(cfg: HilRunConfig, spec) -> None:
    """Hand-over mode needs the rig's region, and a simulated device its classical controller."""
    simulated = cfg.port in ("sim", "pil")
    if cfg.classical is not None and (cfg.mode != "handover" or not simulated):
        raise BpdError("--classical builds the simulated device for --mode handover: give it with --port sim or pil "
                       "and --mode handover (a board's image has its classical controller built in)")
    if cfg.mode != "handover":
        return
    if spec.handover is None:
        raise BpdError(f"rig {spec.name} has no handover block (the region where the policy acts): "
                       "--mode handover is impossible on it")
    if simulated and cfg.classical is None:
        raise BpdError(f"--mode handover with --port {cfg.port} needs --classical DIR (`bpd classical export "
                       "--handover`), the controller built into the simulated device beside the policy")


def run_trial(cfg: HilRunConfig) -> dict:
    spec, pol = check_trial(cfg)  # host mode runs the policy; device and hand-over modes check its hash and sizes
    with LiveView(cfg.view, cfg.view_linger) as view:  # a busy port is refused before any rig starts
        if view.serving:
            print(f"live view: {view.url}", flush=True)
        if cfg.port in ("sim", "pil"):
            with simulated_rig(cfg) as port:
                return _run_trial(HilRunConfig(**(vars(cfg) | {"port": port})), spec, pol, view, via=cfg.port)
        return _run_trial(cfg, spec, pol, view)


def _run_trial(cfg: HilRunConfig, spec, pol, view: LiveView, via: str | None = None) -> dict:
    """A trial on cfg.port; `via` is "sim" or "pil" when that port is a simulated rig's pty started for it."""
    period = int(cfg.period_us or spec.period_us)
    steps = int(cfg.steps or spec.raw.get("max_episode_steps", 1000))
    out = Path(cfg.out)
    lim = spec.limits
    episodes: list[dict] = []
    config = {k: portable_path(v) if k in ("policy", "out", "rig") and isinstance(v, str) and v.startswith("/") else v
              for k, v in vars(cfg).items()}  # results never record a machine's absolute paths
    if via is not None:  # the summary says which simulated device ran (a pil trial's timing counts instructions)
        config |= {"port": via, "device_port": cfg.port}
    summary: dict = {"config": config, "rig": spec.name, "target_period_us": period, "episodes": episodes,
                     "environment": _environment()}  # all made before the port opens
    error: BaseException | None = None
    handover = cfg.mode == "handover"
    # the stops are held from before the port opens until the try below, whose finally closes the link (stopping
    # the device): a stop in between is raised there
    opening = HeldStops()
    try:
        link = DeviceLink(cfg.port, cfg.baud or spec.baud)
        try:  # only once the port opened: a refused port leaves no log directory
            summary["low_latency"] = link.low_latency
            out.mkdir(parents=True, exist_ok=True)
            if untouched_trial(out):  # one refused or stopped before its first tick (check_trial let it be taken)
                (out / "summary.json").unlink()  # first: the directory is never a finished trial of others' ticks
                (out / "ticks.csv").unlink()
            meta = {"rig": spec.name, "period_us": period, "mode": cfg.mode, "labels": column_labels(spec),
                    "device": SIMULATED.get(via or "")}
            log = (ViewedTickLog(out / "ticks.csv", spec.obs_dim, spec.act_dim, view, meta, handover, via)
                   if view.serving else TickLog(out / "ticks.csv", spec.obs_dim, spec.act_dim, handover, via))
        except BaseException:
            link.close()
            raise
    except BaseException:
        opening.release()
        raise
    try:
        opening.release()
        info = link.handshake()
        summary["device"] = info
        _check_device(info, spec, pol, cfg.mode, period)
        # the CONFIG every episode sends, against the rig's bounds once before the first
        check_config(spec, spec.watchdog_ticks, lim["action"], lim["position"], lim["angle"])
        for ep in range(cfg.episodes):
            # recorded as it runs: an episode the trial's end cuts short is in the summary with its ticks so far
            episodes.append({"episode": ep, "return": 0.0, "length": 0, "ended": None, "deadline_misses": 0})
            _episode(link, log, cfg, episodes[-1], period, steps, lim, pol, spec.watchdog_ticks,
                     (spec.pos_index, spec.angle_index))
            log.flush()
            if episodes[-1]["ended"] == ESTOP and ep + 1 < cfg.episodes:  # the next episode's START would drive
                raise BpdError(f"the emergency stop ended episode {ep}: the trial stops there, its release restarts "
                               f"nothing (ISO 13850; episodes {ep + 1}-{cfg.episodes - 1} not run: release it and run "
                               "bpd hil run again)")
        summary["device_dropped"] = link.dropped()  # the device's own counts, since its power-on
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (bpd_app/cli.py raises it for them)
        error = e
        summary["ended"] = f"interrupted ({str(e) or 'Ctrl-C'})"  # the stop's outcome added below
    except (LinkError, BpdError) as e:
        error = e
        summary["ended"] = f"error: {e}"
    except BaseException as e:  # a fault of the host itself: the stop below still goes out, then it propagates
        summary["ended"] = f"host fault: {e.__class__.__name__}: {e}"
        raise
    finally:
        # no stop (a second Ctrl-C; a closed terminal sends SIGHUP and SIGTERM) cuts the device's stop and the
        # summary short: the hold is counted first, without a call, where Python would run a handler
        HOLD[0] += 1
        closing = HeldStops(entered=True)
        try:
            link.close()  # stop: the device zeroes its actuator
            stop_outcome = STOP_FAILED if link.stop_error else "stop sent"
            if error is not None:  # interrupted or an error: the log says whether the stop reached the device
                sep = ": " if isinstance(error, KeyboardInterrupt) else "; "  # as the line on stderr puts it
                summary["ended"] += sep + stop_outcome
            log.close()
            summary["timing"] = timing_summary(out / "ticks.csv", period)
            if handover:
                summary["handover"] = handover_summary(out / "ticks.csv")
            summary["bad_frames"] = {"host_parser": link.parser.bad_frames, "frames_ok": link.parser.frames_ok}
            summary.setdefault("ended", "complete")
            if episodes and episodes[-1]["ended"] is None:
                if episodes[-1]["length"]:
                    episodes[-1]["ended"] = f"{CUT_SHORT}: the trial ended ({summary['ended']})"
                else:  # cut before its first tick: no episode
                    episodes.pop()
            write_json(out / "summary.json", summary)
            view.finish(summary)  # the page says the trial is over now, not once the plots are drawn (seconds)
        finally:
            closing.release()  # a stop held meanwhile is raised now: the plots may be interrupted
        if cfg.plots and summary["timing"].get("ticks"):
            try:
                from hil.report import render
                render(out)
            except Exception as e:  # plots never hide the trial's own outcome
                summary["plots"] = f"not rendered: {e}"
    if isinstance(error, KeyboardInterrupt):  # bpd_app/cli.py's one line says what became of the trial
        error.bpd_note = f"{stop_outcome}; logs kept in {out}"  # type: ignore
        raise error
    if error is not None:
        stop = f"; {STOP_FAILED}" if link.stop_error else ""
        raise BpdError(f"{error}{stop} (logs kept in {out})")
    return summary


class RigProcess:
    """A `bpd rig ...` subprocess that prints its pty path first, for as long as a `with` lasts; a
    build directory of its own (if given) goes with it. In a process group of its own, so that a Ctrl-C at
    the terminal reaches this process only, whose stop then reaches the rig before the rig goes. stdin: the rig's
    (subprocess.PIPE: `proc.stdin` writes to it), else this process's."""

    def __init__(self, args: list[str], build: str | None = None, stdin: int | None = None) -> None:
        import subprocess

        self.build = build
        self.what = "the image under QEMU (bpd rig pil)" if args[:2] == ["rig", "pil"] else "the simulated rig"
        self.proc = subprocess.Popen([bpd_executable(), *args], stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent, process_group=0)

    def __enter__(self) -> str:
        assert self.proc.stdout is not None and self.proc.stderr is not None  # started with both piped
        try:
            path = self.proc.stdout.readline().strip()
        except BaseException:  # stopped while the rig builds: it and its build go now, not by the parent's death
            self.__exit__()
            raise
        if not path:
            err = self.proc.stderr.read().strip().splitlines()
            last = err[-1].removeprefix("bpd: error: ") if err else "no output"  # the child's own one line
            self._remove_build()
            raise BpdError(f"{self.what} did not start: {last}")
        return path

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
        self._remove_build()

    def _remove_build(self) -> None:
        if self.build is not None:
            shutil.rmtree(self.build, ignore_errors=True)


class simulated_rig(RigProcess):
    """`bpd rig sim` (or `bpd rig pil`, whose instruction counts go to OUT/ticks_pil.csv) in a
    subprocess for the length of a trial; yields its pty path."""

    def __init__(self, cfg: HilRunConfig) -> None:
        build: str | None = None
        if cfg.port == "pil":
            if cfg.period_us:
                raise BpdError("--period-us with --port pil: the image runs the period its rig was built with")
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            args = ["rig", "pil", "--rig", cfg.rig, "--seed", str(cfg.seed), "--log",
                    str(Path(cfg.out) / "ticks_pil.csv")]
        else:
            build = tempfile.mkdtemp(prefix="bpd-rig-sim-")  # the device library: gone with the trial
            args = ["rig", "sim", "--rig", cfg.rig, *(["--lockstep"] if cfg.lockstep else []),
                    "--seed", str(cfg.seed), "--build-dir", build]
        if Path(cfg.policy).is_dir():
            args += ["--policy", cfg.policy]
        if cfg.classical is not None:
            args += ["--classical", cfg.classical]
        if cfg.period_us:
            args += ["--period-us", str(cfg.period_us)]
        super().__init__(args, build)


def _environment() -> dict:
    import onnxruntime

    return {"bpd": bpd.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__, "argv": portable_argv(sys.argv)}


def _check_device(info: dict, spec, pol, mode: str, period: int) -> None:
    check_rig_device(info, spec, period)
    if pol.obs_dim != info["obs_dim"] or pol.act_dim != info["act_dim"]:
        raise LinkError(f"policy sizes {pol.obs_dim}->{pol.act_dim} differ from the device's "
                        f"{info['obs_dim']}->{info['act_dim']}")
    if mode in ("device", "handover"):
        if not info["caps"] & CAPS["device_policy"]:
            raise LinkError(f"the device has no on-device policy ({mode} mode impossible): flash it with an image "
                            "built from the export (bpd firmware build EXPORT --board ..., then bpd firmware flash), "
                            "or run --mode host")
        if mode == "handover" and not info["caps"] & CAPS["handover"]:
            raise LinkError("the device has no hand-over mode (INFO caps bit 2: no classical controller built in "
                            "beside its policy; `bpd classical export --handover`, then build with --classical)")
        dev_hash = bytes(info["model_hash"]).hex()
        if not pol.model_hash or pol.model_hash[:16] != dev_hash:
            raise LinkError(f"the device runs model {dev_hash}, the export is {(pol.model_hash or '?')[:16]}: "
                            "flash the matching firmware")
        if info.get("selftest") == SELFTEST["fail"]:
            who = "policy or its classical controller" if mode == "handover" else "policy"
            raise LinkError(f"the device's {who} failed its boot self-test (its weights are not the exported ones): "
                            f"it refuses {mode} mode; flash the firmware again")


def _episode(link: DeviceLink, log: TickLog, cfg: HilRunConfig, rec: dict, period: int, steps: int, lim: dict,
             pol, watchdog: int, limit_index: tuple[int, int]) -> None:
    """One episode, its record `rec` (episode, return, length, ended, deadline_misses) kept up to date tick by
    tick and its `ended` set once it is over."""
    ep = rec["episode"]
    link.command("reset", seed=cfg.seed + ep)
    link.configure(period, watchdog, cfg.mode, lim["action"], lim["position"], lim["angle"])
    link.command("start")
    ret, n, misses, ended = 0.0, 0, 0, "max steps"
    prev_t = None
    t_start = time.perf_counter()
    while n < steps:
        try:
            batch = link.next_states(cfg.stall_timeout)
        except DeviceFault as e:
            raise LinkError(f"{e} (episode {ep}, tick {n}; the device zeroed its actuator)") from None
        except DeviceRestarted as e:
            raise LinkError(f"{e} (episode {ep}, tick {n})") from None
        recv = time.perf_counter()
        for i, st in enumerate(batch):
            if n >= steps:  # the episode is complete; later states belong to no episode
                break
            f = st.fields
            obs = np.asarray(f["obs"], np.float32)
            newest = i == len(batch) - 1
            upright = not f["flags"] & STOPPED
            # the host's own check of the limits, behind the device's (the same limits): no action goes out for a
            # state past them, and a NaN is past them
            inside = bool(abs(obs[limit_index[0]]) <= lim["position"] and abs(obs[limit_index[1]]) <= lim["angle"])
            compute_us, send = 0.0, recv
            answer = inside and newest and f["flags"] & FLAGS["running"]
            if cfg.mode == "host" and answer:
                c0 = time.perf_counter()
                a = np.clip(np.asarray(pol.act(obs), np.float64).reshape(-1), -lim["action"], lim["action"])
                compute_us = (time.perf_counter() - c0) * 1e6
                if not np.isfinite(a).all():
                    a = np.zeros_like(a)
                link.send("action", echo_seq=st.seq, n_act=len(a), action=[float(x) for x in a])
                send = time.perf_counter()
            elif answer:  # device mode: the answer shows the host is there
                link.send("action", echo_seq=st.seq, n_act=len(f["action"]), action=f["action"])
            miss = int(cfg.mode == "host" and (not newest or (send - recv) * 1e6 > period))
            misses += miss
            dt = ((f["t_us"] - prev_t) & 0xFFFFFFFF) if prev_t is not None else ""
            prev_t = f["t_us"]
            ret += 1.0 if upright else 0.0
            n += 1
            rec["return"], rec["length"], rec["deadline_misses"] = ret, n, misses
            log.add([ep, n, st.seq, f["t_us"], dt, f"{recv - t_start:.6f}", f"{send - t_start:.6f}",
                     f"{(send - recv) * 1e6:.1f}" if newest and cfg.mode == "host" else "",
                     f"{compute_us:.1f}" if compute_us else "", f["rtt_us"], f["infer_ns"], f["policy_cycles"],
                     f["jitter_us"], f["jitter_max_us"], miss,
                     int(cfg.mode == "host" and not newest), f["flags"], 1.0 if upright else 0.0,
                     *([int(bool(f["flags"] & FLAGS["classical"]))] if log.handover else []),
                     *[f"{x:.6g}" for x in obs], *[f"{x:.6g}" for x in f["action"]]])
            if not upright:  # named by its flags: a held emergency stop ends every run at its first tick
                ended = device_stop(f["flags"], inside)
                break
            if not inside:
                ended = "limit (host stopped)"
                break
        if ended != "max steps":
            break
    link.stop_and_zero()
    try:
        link.wait_for("ack", 1.0)
    except LinkError:
        pass
    rec["ended"] = ended
