"""Bad input across every subcommand: one line `bpd: error: ...`, a non-zero exit that is not the
internal-error code, and every file that existed before left byte for byte (nothing new either).

The shared artifacts (a hand-made teacher, a collected dataset, a short distillation, its export, a
stable-baselines3-shaped zip, a trial log) are built once; each case copies and damages what it needs
in its own directory and runs `bpd` in-process through bpd_app.cli.main.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bpd.io import load_arrays, save_arrays
from bpd_app.cli import main
from tests.conftest import edit_nested

INTERNAL = 70
FW = Path(__file__).resolve().parent.parent / "firmware_host" / "rig" / "rigs"


# --------------------------------------------------------------------------- shared artifacts


def _bpd(*argv: str) -> None:
    rc = main([str(a) for a in argv])
    assert rc == 0, argv


def _hand_teacher(path: Path, seed: int = 0, env_id: str = "InvertedPendulum-v5", obs_dim: int = 4,
                  bound: float = 3.0) -> None:
    from training.teacher import Teacher

    rng = np.random.default_rng(seed)
    Teacher(env_id=env_id, weights=[rng.normal(0, 0.5, (8, obs_dim)).astype(np.float32),
                                    rng.normal(0, 0.5, (1, 8)).astype(np.float32)],
            biases=[np.zeros(8, np.float32), np.zeros(1, np.float32)], activation="tanh", output="tanh",
            obs_mean=np.zeros(obs_dim, np.float32), obs_std=np.ones(obs_dim, np.float32),
            action_low=np.array([-bound], np.float32), action_high=np.array([bound], np.float32),
            algo="sac", source="hand-made for tests").save(path)


def _sb3_zip(path: Path, data: dict | None = None, sd: dict | None = None, raw_pth: bytes | None = None) -> None:
    """A zip shaped like a stable-baselines3 SAC save: a JSON `data` record and `policy.pth` weights."""
    g = torch.Generator().manual_seed(0)
    if sd is None:
        sd = {"actor.latent_pi.0.weight": torch.randn(8, 4, generator=g), "actor.latent_pi.0.bias": torch.zeros(8),
              "actor.latent_pi.2.weight": torch.randn(8, 8, generator=g), "actor.latent_pi.2.bias": torch.zeros(8),
              "actor.mu.weight": torch.randn(1, 8, generator=g), "actor.mu.bias": torch.zeros(1)}
    if data is None:
        data = {"policy_class": {"__module__": "stable_baselines3.sac.policies"},
                "action_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", "low": "[-3.]", "high": "[3.]"},
                "observation_space": {"_shape": [4]}, "env_id": "InvertedPendulum-v5", "policy_kwargs": {}}
    buf = io.BytesIO()
    torch.save(sd, buf)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", data if isinstance(data, str) else json.dumps(data))
        z.writestr("policy.pth", raw_pth if raw_pth is not None else buf.getvalue())


def _trial(d: Path) -> None:
    from hil.ticklog import columns

    d.mkdir()
    lines = ["# units: -", ",".join(n for n, _ in columns(4, 1))]
    for i in range(6):
        lines.append(",".join(["0", str(i + 1), str(i), str(40000 * i), "40000" if i else "", "0.1", "0.1", "50.0",
                               "10.0", "100", "0", "0", "0", "0", "0", "0", "1", "1.0", "0", "0", "0", "0", "0"]))
    (d / "ticks.csv").write_text("\n".join(lines) + "\n")
    (d / "summary.json").write_text(json.dumps({"target_period_us": 40000, "rig": "gym-inverted-pendulum"}))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    b = tmp_path_factory.mktemp("bad_input_base")
    _hand_teacher(b / "teacher.npz")
    _bpd("collect", "--teacher", b / "teacher.npz", "--out", b / "dataset.npz", "--steps", "300", "--no-progress")
    _bpd("distill", "--teacher", b / "teacher.npz", "--dataset", b / "dataset.npz", "--out", b / "run",
         "--steps", "20", "--eval-every", "20", "--eval-episodes", "1", "--checkpoint-every", "10",
         "--hidden", "8", "--critic-hidden", "16", "--batch", "32", "--no-progress")
    _bpd("export", b / "run", "--out", b / "export", "--episodes", "0", "--parity-samples", "200")
    _sb3_zip(b / "sb3.zip")
    _trial(b / "trial")
    shutil.copyfile(FW / "gym-inverted-pendulum.yaml", b / "rig.yaml")
    # a second task (another environment) for the multi-task commands and the mismatched-task cases
    _hand_teacher(b / "teacher2.npz", seed=1, env_id="Pendulum-v1", obs_dim=3, bound=2.0)
    _bpd("collect", "--teacher", b / "teacher2.npz", "--out", b / "dataset2.npz", "--steps", "300", "--no-progress")
    _bpd("multitask", "train", "--teachers", b / "teacher.npz", b / "teacher2.npz", "--datasets", b / "dataset.npz",
         b / "dataset2.npz", "--out", b / "mt", "--steps", "4", "--eval-every", "4", "--eval-episodes", "1",
         "--trunk", "8", "--batch", "16", "--no-progress")
    return b


# --------------------------------------------------------------------------- damage, copied into the case dir


def teacher_with(c: Path, b: Path, name: str = "t.npz", meta: dict | None = None, **arrays) -> None:
    m, a = load_arrays(b / "teacher.npz", "bpd-teacher")
    for k, f in arrays.items():
        a[k] = f(a[k].copy())
    save_arrays(c / name, m | (meta or {}), a)


def dataset_with(c: Path, b: Path, name: str = "d.npz", meta: dict | None = None, **arrays) -> None:
    m, a = load_arrays(b / "dataset.npz", "bpd-dataset")
    for k, f in arrays.items():
        a[k] = f(a[k].copy())
    save_arrays(c / name, m | (meta or {}), a)


def _nan_at(a: np.ndarray) -> np.ndarray:
    a.flat[0] = np.nan
    return a


def _inf_at(a: np.ndarray) -> np.ndarray:
    a.flat[0] = np.inf
    return a


def student_with(c: Path, b: Path, change) -> None:
    blob = torch.load(b / "run" / "student.pt", weights_only=True)
    change(blob)
    torch.save(blob, c / "s.pt")


def _nan_weight(blob: dict) -> None:
    blob["state_dict"]["layers.0.theta"][0, 0] = float("nan")


def _other_arch(blob: dict) -> None:
    blob["meta"]["hidden"] = [5]


def _hidden_zero(blob: dict) -> None:
    blob["meta"]["hidden"] = [0]


def _nan_stats(blob: dict) -> None:
    blob["stats"]["obs_std"][0] = float("nan")


def _no_meta(blob: dict) -> None:
    del blob["meta"]


def export_copy(c: Path, b: Path) -> Path:
    e = c / "exp"
    shutil.copytree(b / "export", e, ignore=shutil.ignore_patterns("build*"))
    return e


def _edit_json(path: Path, change) -> None:
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


def flip_weight(c: Path, b: Path) -> None:
    """Negate one weight where the export keeps it (policy_weights.c for the generic kernel, the table in
    policy.c for the compact one, a multiply-add's literal for the generated one) and keep the banner
    (the model hash string) as it was."""
    e = export_copy(c, b)
    for name, pattern in (("policy_weights.c", r"_w\[\d+\] = \{\s*(-?)([0-9])"),
                          ("policy.c", r"bpd_table\[\d+\] = \{\s*(-?)([0-9])"),
                          ("policy.c", r"BPD_MAC\(h0_0, (-?)([0-9])")):
        p = e / name
        text = p.read_text()
        m = re.search(pattern, text)
        if m:
            break
    assert m, "no weight found in the export"
    i = m.start(2) if not m.group(1) else m.start(1)
    p.write_text(text[:i] + ("-" if not m.group(1) else "") + text[i + (1 if m.group(1) else 0):])


def resign_onnx(c: Path, b: Path) -> None:
    """Change a weight in policy.onnx and record the new file's sha256: only the hash recomputed from
    the weights can tell."""
    import onnx
    from onnx import numpy_helper

    e = export_copy(c, b)
    model = onnx.load(str(e / "policy.onnx"))
    w = numpy_helper.to_array(model.graph.initializer[0]).copy()
    w.flat[0] = -w.flat[0] if w.flat[0] else 1.0
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, model.graph.initializer[0].name))
    onnx.save(model, str(e / "policy.onnx"))
    _edit_json(e / "export.json", lambda i: i["files"].__setitem__(
        "policy.onnx", hashlib.sha256((e / "policy.onnx").read_bytes()).hexdigest()))


EXPORT_DAMAGE = {
    "flipped weight": (flip_weight, ".c: changed after export"),
    "no export.json": (lambda c, b: (export_copy(c, b) / "export.json").unlink(), "export"),
    "corrupt export.json": (lambda c, b: (export_copy(c, b) / "export.json").write_text("{not json"), "corrupt"),
    "export.json a list": (lambda c, b: (export_copy(c, b) / "export.json").write_text("[1, 2]"),
                           "not a bpd export record"),
    "no parity record": (lambda c, b: _edit_json(export_copy(c, b) / "export.json", lambda i: i.pop("parity")),
                         "no passed parity"),
    "parity failed": (lambda c, b: _edit_json(export_copy(c, b) / "export.json",
                                              lambda i: i["parity"].__setitem__("pass", False)), "no passed parity"),
    "no file record": (lambda c, b: _edit_json(export_copy(c, b) / "export.json", lambda i: i.pop("files")),
                       "no file hashes"),
    "missing onnx": (lambda c, b: (export_copy(c, b) / "policy.onnx").unlink(), "policy.onnx is missing"),
    "hash renamed": (lambda c, b: _edit_json(export_copy(c, b) / "export.json",
                                             lambda i: i.__setitem__("model_hash", "0" * 64)), "export.json names"),
    "onnx re-signed": (resign_onnx, "do not match the model hash"),
    "kernel edited": (lambda c, b: (export_copy(c, b) / "policy.c").open("a").write("/* x */\n"),
                      "policy.c: changed after export"),
    "not a directory": (lambda c, b: (c / "exp").write_text("x"), "exp"),
}


def yaml_with(c: Path, text: str | None = None, **changes) -> None:
    import yaml

    if text is None:
        raw = edit_nested(yaml.safe_load((FW / "gym-inverted-pendulum.yaml").read_text()), changes, _DEL)
        text = yaml.safe_dump(raw)
    (c / "rig.yaml").write_text(text)


_DEL = object()
RIG_DAMAGE = {
    "yaml syntax": (dict(text="name: x\nplant: [unclosed\n  period_us: 1\n"), "YAML syntax error at line"),
    "yaml tab": (dict(text="name: x\n\tplant: cartpole\n"), "YAML syntax error"),
    "not a mapping": (dict(text="- 1\n- 2\n"), "expected a mapping"),
    "period 0": (dict(period_us=0), "period_us must be at least 50"),
    "period negative": (dict(period_us=-40000), "period_us"),
    "period text": (dict(period_us="fast"), "period_us must be a finite number"),
    "period fraction": (dict(period_us=40000.5), "whole number"),
    "no limits": (dict(limits=_DEL), "missing key 'limits'"),
    "no name": (dict(name=_DEL), "missing key 'name'"),
    "no angle limit": (dict(limits__angle=_DEL), "limits.angle"),
    "negative limit": (dict(limits__action=-3.0), "limits.action must be above 0"),
    "nan limit": (dict(text=(FW / "gym-inverted-pendulum.yaml").read_text().replace("action: 3.0", "action: .nan")),
                  "limits.action must be a finite number"),
    "too many sensors": (dict(sensors__counts_per_unit=[0, 0, 0, 0, 0, 0, 0, 0, 0]), "observations, more than"),
    "sensors not a list": (dict(sensors__counts_per_unit=3), "counts_per_unit"),
    "no counts": (dict(sensors__counts_per_unit=_DEL), "counts_per_unit"),
    "unknown plant": (dict(plant="hovercraft"), "unknown plant"),
    "envs not a list": (dict(envs="InvertedPendulum-v5"), "envs must be a list of environment ids"),
    "two actuators": (dict(actuators=2), "actuators must be 1"),
    "watchdog 0": (dict(watchdog_ticks=0), "watchdog_ticks"),
    "watchdog past 16 bits": (dict(watchdog_ticks=65536), "watchdog_ticks must be at most 65535"),
    "bad baud": (dict(serial={"baud": -5}), "serial.baud"),
}


def trial_with(c: Path, b: Path, change) -> None:
    shutil.copytree(b / "trial", c / "trial")
    change(c / "trial")


def _tear_middle(d: Path) -> None:
    lines = (d / "ticks.csv").read_text().splitlines()
    lines[3] = lines[3][:7]
    (d / "ticks.csv").write_text("\n".join(lines) + "\n")


def _garbage_row(d: Path) -> None:
    lines = (d / "ticks.csv").read_text().splitlines()
    lines[4] = lines[4].replace("40000", "forty", 1)
    (d / "ticks.csv").write_text("\n".join(lines) + "\n")


def _resaved_teacher(src: Path, dst: Path) -> None:
    """The same network in another file (another source recorded): the dataset's labels are its actions, its hash
    is not the run's."""
    from training.teacher import load_teacher

    t = load_teacher(src)
    t.source = "saved again"
    t.save(dst)


def _run_with(c: Path, b: Path, change) -> None:
    shutil.copytree(b / "run", c / "run")
    change(c / "run")


def _other_arch_checkpoint(run: Path) -> None:
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    ck["trainer"]["actor"] = {k: torch.zeros(3) for k in ck["trainer"]["actor"]}
    torch.save(ck, run / "checkpoint.pt")


def _nan_checkpoint(run: Path) -> None:
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    next(iter(ck["trainer"]["critic"].values())).view(-1)[0] = float("nan")
    torch.save(ck, run / "checkpoint.pt")


def _nan_onnx(c: Path, b: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(b / "export" / "policy.onnx"))
    w = numpy_helper.to_array(model.graph.initializer[1]).copy()
    w.flat[0] = np.nan
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(w, model.graph.initializer[1].name))
    onnx.save(model, str(c / "policy.onnx"))


def _replaced_dataset(c: Path, b: Path) -> None:
    """The run's dataset replaced under the same path: different content, same name."""
    shutil.copytree(b / "run", c / "run")
    dataset_with(c, b, "dataset.npz", rewards=lambda r: r * 2)


# --------------------------------------------------------------------------- the table

B, C = "{b}", "{c}"
T, D, RUN, EXP = f"{B}/teacher.npz", f"{B}/dataset.npz", f"{B}/run", f"{B}/export"
T2, D2 = f"{B}/teacher2.npz", f"{B}/dataset2.npz"
DISTILL = ["distill", "--teacher", T, "--dataset", D, "--out", f"{C}/r", "--no-progress"]
HIL = ["hil", "run", "--port", "sim", "--rig", "gym-inverted-pendulum", "--policy", EXP, "--out", f"{C}/log",
       "--no-plots"]
RIG = ["rig", "sim", "--build-dir", f"{C}/bld"]
BENCH = ["bench", EXP, "--out", f"{C}/bench", "--no-peers"]
FWB = ["firmware", "build", EXP, "--out", f"{C}/fw"]
EVAL = ["evaluate", "--episodes", "1"]
RO = "/proc/bpd-test-out"  # a place nobody can write, root included

CASES: list[tuple[str, list[str], str, object]] = []
CASE_CLASS: dict[str, str] = {}  # case name -> the class of bad input it stands for (the results file counts them)
SECTION = "earlier rounds"


def case(name: str, argv: list[str], expect: str = "", setup=None, cls: str | None = None) -> None:
    CASES.append((name, argv, expect, setup))
    CASE_CLASS[name] = cls or SECTION


# -- the command line itself: unknown flags, wrong types, missing arguments, bad choices
case("no such subcommand", ["flyaway"], "invalid choice")
case("unknown flag", ["collect", "--teacher", T, "--bogus"], "unrecognized arguments: --bogus (see bpd collect --help)")
case("unknown flag of a two-word command", ["experiment", "status", "plan.yaml", "--bogus"],
     "bpd: error: experiment status: unrecognized arguments: --bogus (see bpd experiment status --help)")
case("unknown flag before the command", ["--bogus", "experiment", "status", "plan.yaml"],
     "bpd: error: unrecognized arguments: --bogus (see bpd --help)")
case("distill steps not a number", DISTILL + ["--steps", "many"], "invalid int value")
case("distill steps 1e11", DISTILL + ["--steps", "1e11"], "invalid int value")
case("teacher train steps 1e11", ["teacher", "train", "--steps", "1e11"], "invalid int value")
case("teacher train steps 10^11", ["teacher", "train", "--out", f"{C}/t.npz", "--steps", "100000000000"], "at most")
case("collect steps 10^11", ["collect", "--teacher", T, "--out", f"{C}/d.npz", "--steps", "100000000000"], "at most")
case("distill steps 10^11", DISTILL + ["--steps", "100000000000"], "at most")
case("collect missing teacher", ["collect"], "required")
case("distill missing dataset", ["distill", "--teacher", T], "required")
case("export bad format", ["export", RUN, "--format", "sparse"], "invalid choice")
case("evaluate no model", ["evaluate"], "required")
case("hil run bad mode", HIL + ["--mode", "remote"], "invalid choice")
case("hil run no such port", [*HIL[:3], "/dev/ttyNOPE", *HIL[4:]],
     "cannot open /dev/ttyNOPE: No such file or directory")
case("firmware build bad target", FWB + ["--target", "z80"], "invalid choice")
case("export package url without package", ["export", RUN, "--out", f"{C}/e", "--package-url", "https://x.org"],
     "give --package too")
case("export package name without package", ["export", RUN, "--out", f"{C}/e", "--package-name", "swing"],
     "--package-name names the library --package writes: give --package too")
case("export package name not a C name", ["export", RUN, "--out", f"{C}/e", "--package", "cmake", "--package-name",
                                          "Swing-Up"], "--package-name 'Swing-Up': a lower-case C name")
case("firmware build board on host", FWB + ["--target", "host", "--board", "nucleo-f446"],
     "--board nucleo-f446 is a Cortex-M firmware image's board layer: not for --target host")
case("firmware build board on bench image", FWB + ["--image", "bench", "--board", "stm32f4"],
     "not for --image bench")
case("firmware build rig on bench image", FWB + ["--image", "bench", "--rig", "desktop-cartpole"],
     "--rig desktop-cartpole: a bench image (the policy and an entry point) has no rig; leave out --rig, or build the "
     "firmware (--image firmware)")
case("hil report no dir", ["hil", "report"], "required")
case("rig sim period text", RIG + ["--period-us", "fast"], "invalid int value")
case("teacher train unknown env", ["teacher", "train", "--env", "NoSuchEnv-v9", "--out", f"{C}/t.npz"],
     "unknown or unavailable")
case("teacher import activation", ["teacher", "import", f"{B}/sb3.zip", "--activation", "gelu"], "invalid choice")
case("collect noise text", ["collect", "--teacher", T, "--noise", "lots"], "invalid float value")
case("evaluate episodes float", [*EVAL[:1], T, "--episodes", "2.5"], "invalid int value")

# -- numeric flags out of range, NaN and Inf where a number is read
for flag, value, msg in [("--steps", "0", "at least 1"), ("--steps", "-5", "at least 1"),
                         ("--steps", "1000000000", "at most"), ("--batch", "0", "--batch"),
                         ("--actor-lr", "-1", "--actor-lr must be above 0"), ("--actor-lr", "0", "--actor-lr"),
                         ("--actor-lr", "nan", "finite"), ("--critic-lr", "inf", "finite"),
                         ("--critic-lr", "-0.1", "--critic-lr"), ("--threads", "0", "--threads"),
                         ("--eval-every", "0", "--eval-every"), ("--eval-episodes", "0", "--eval-episodes"),
                         ("--checkpoint-every", "0", "--checkpoint-every"), ("--policy-freq", "0", "--policy-freq"),
                         ("--gamma", "1.5", "--gamma"), ("--gamma", "-0.1", "--gamma"), ("--tau", "0", "--tau"),
                         ("--tau", "2", "--tau"), ("--alpha", "-1", "--alpha"), ("--alpha", "nan", "finite"),
                         ("--bc-weight", "-1", "--bc-weight"), ("--eta-max", "-1", "--eta-max"),
                         ("--eta-ramp", "1.5", "--eta-ramp"), ("--kl-scale", "0", "--kl-scale"),
                         ("--kl-scale", "inf", "finite"), ("--threshold", "nan", "finite"),
                         ("--log-alpha-clip", "0", "--log-alpha-clip"), ("--init-log-sigma2", "100", "at most"),
                         ("--policy-noise", "-0.2", "--policy-noise"), ("--noise-clip", "-1", "--noise-clip"),
                         ("--seed", "-1", "--seed"), ("--hidden", "0", "--hidden"), ("--hidden", "-4", "--hidden"),
                         ("--critic-hidden", "0", "--critic-hidden"), ("--hidden", "100000", "at most")]:
    case(f"distill {flag} {value}", DISTILL + [flag, value], msg)
for flag, value, msg in [("--steps", "0", "at least 1"), ("--hidden", "0", "--hidden"),
                         ("--eval-every", "0", "--eval-every"), ("--threads", "0", "--threads"),
                         ("--learning-rate", "-1", "--learning-rate"), ("--action-noise", "nan", "finite"),
                         ("--target-return", "inf", "finite"), ("--eval-episodes", "0", "--eval-episodes"),
                         ("--checkpoint-every", "0", "--checkpoint-every"), ("--learning-starts", "-1", "learning"),
                         ("--seed", "-1", "--seed"), ("--action-repeat", "0", "--action-repeat")]:
    case(f"teacher train {flag} {value}", ["teacher", "train", "--out", f"{C}/t.npz", flag, value], msg)
for flag, value, msg in [("--steps", "0", "at least 1"), ("--steps", "-3", "at least 1"),
                         ("--noise", "nan", "finite"), ("--noise", "inf", "finite"), ("--noise", "-0.1", "--noise"),
                         ("--seed", "-2", "--seed")]:
    case(f"collect {flag} {value}", ["collect", "--teacher", T, "--out", f"{C}/d.npz", flag, value], msg)
for flag, value, msg in [("--episodes", "0", "--episodes"), ("--episodes", "-1", "--episodes"),
                         ("--seed", "-1", "--seed")]:
    case(f"evaluate {flag} {value}", ["evaluate", T, flag, value], msg)
for flag, value, msg in [("--parity-samples", "0", "--parity-samples"), ("--parity-samples", "-10", "--parity"),
                         ("--episodes", "-1", "--episodes"), ("--seed", "-3", "--seed")]:
    case(f"export {flag} {value}", ["export", RUN, "--out", f"{C}/e", flag, value], msg)
for flag, value, msg in [("--period-us", "-40000", "--period-us"), ("--period-us", "0", "--period-us"),
                         ("--drop-rate", "2", "--drop-rate"), ("--corrupt-rate", "-0.5", "--corrupt-rate"),
                         ("--link-delay-ms", "-1", "--link-delay-ms"), ("--stall-at", "-1", "--stall-at"),
                         ("--seed", "-1", "--seed"), ("--link-delay-ms", "nan", "finite"),
                         ("--actuation-latency-us", "-5", "--actuation-latency-us")]:
    case(f"rig sim {flag} {value}", RIG + [flag, value], msg)
case("rig sim drop + corrupt > 1", RIG + ["--drop-rate", "0.7", "--corrupt-rate", "0.7"],
     "--drop-rate plus --corrupt-rate must be at most 1")
for flag, value, msg in [("--episodes", "0", "--episodes"), ("--period-us", "-40000", "--period-us"),
                         ("--steps", "0", "--steps"), ("--baud", "0", "--baud"), ("--stall-timeout", "0", "--stall"),
                         ("--stall-timeout", "nan", "finite"), ("--seed", "-1", "--seed")]:
    case(f"hil run {flag} {value}", HIL + [flag, value], msg)
for flag, value, msg in [("--samples", "0", "--samples"), ("--host-iters", "0", "--host-iters")]:
    case(f"bench {flag} {value}", BENCH + [flag, value], msg)

# -- teachers: missing, corrupt, the wrong kind of file, NaN/Inf, broken normalisation, bad shapes
TEACHER_DAMAGE = {
    "missing": (None, "no such file"),
    "random bytes": (lambda c, b: (c / "t.npz").write_bytes(b"PK" + bytes(range(256)) * 4), "not a readable"),
    "a dataset": (lambda c, b: shutil.copyfile(b / "dataset.npz", c / "t.npz"), "expected 'bpd-teacher'"),
    "NaN weight": (lambda c, b: teacher_with(c, b, W0=_nan_at), "NaN or Inf"),
    "NaN obs_mean": (lambda c, b: teacher_with(c, b, obs_mean=_nan_at), "normalisation must be finite"),
    "Inf obs_std": (lambda c, b: teacher_with(c, b, obs_std=_inf_at), "normalisation must be finite"),
    "zero obs_std": (lambda c, b: teacher_with(c, b, obs_std=lambda a: a * 0), "positive scales"),
    "NaN action bound": (lambda c, b: teacher_with(c, b, action_high=_nan_at), "action bounds must be finite"),
    "reversed bounds": (lambda c, b: teacher_with(c, b, action_low=lambda a: a + 10), "low < high"),
    "no layers key": (lambda c, b: teacher_with(c, b, meta={"layers": None}), "malformed teacher"),
    "chain broken": (lambda c, b: teacher_with(c, b, W1=lambda a: np.zeros((1, 5), np.float32)), "input width"),
    "bad activation": (lambda c, b: teacher_with(c, b, meta={"activation": "gelu"}), "unsupported activation"),
}
for name, (setup, msg) in TEACHER_DAMAGE.items():
    case(f"collect teacher {name}", ["collect", "--teacher", f"{C}/t.npz", "--out", f"{C}/d.npz"], msg, setup)
    case(f"evaluate teacher {name}", [*EVAL, f"{C}/t.npz"], msg if name != "missing" else "no such file", setup)
for name in ("NaN obs_mean", "Inf obs_std", "random bytes", "a dataset", "chain broken"):
    setup, msg = TEACHER_DAMAGE[name]
    case(f"distill teacher {name}", ["distill", "--teacher", f"{C}/t.npz", "--dataset", D, "--out", f"{C}/r"],
         msg, setup)
    case(f"export teacher {name}", ["export", f"{C}/t.npz", "--out", f"{C}/e", "--episodes", "0"], msg, setup)

# -- datasets
DATASET_DAMAGE = {
    "missing": (None, "no such file"),
    "random bytes": (lambda c, b: (c / "d.npz").write_bytes(b"PK" + bytes(300)), "not a readable"),
    "a teacher": (lambda c, b: shutil.copyfile(b / "teacher.npz", c / "d.npz"), "expected 'bpd-dataset'"),
    "NaN observation": (lambda c, b: dataset_with(c, b, observations=_nan_at), "NaN or Inf"),
    "Inf reward": (lambda c, b: dataset_with(c, b, rewards=_inf_at), "NaN or Inf"),
    "NaN action": (lambda c, b: dataset_with(c, b, actions=_nan_at), "NaN or Inf"),
    "wrong dims": (lambda c, b: dataset_with(c, b, observations=lambda a: a[:, :3]), "has shape"),
    "zero obs_std": (lambda c, b: dataset_with(c, b, obs_std=lambda a: a * 0), "obs_std must be positive"),
    "missing array": (lambda c, b: (lambda m_a: save_arrays(c / "d.npz", m_a[0], {k: v for k, v in m_a[1].items()
                                                                               if k != "rewards"}))(
        load_arrays(b / "dataset.npz", "bpd-dataset")), "missing rewards"),
    "meta dims text": (lambda c, b: dataset_with(c, b, meta={"obs_dim": "four"}), "positive integers"),
}
for name, (setup, msg) in DATASET_DAMAGE.items():
    case(f"distill dataset {name}", ["distill", "--teacher", T, "--dataset", f"{C}/d.npz", "--out", f"{C}/r"],
         msg, setup)
case("export parity dataset NaN", ["export", RUN, "--out", f"{C}/e", "--dataset", f"{C}/d.npz", "--episodes", "0"],
     "NaN or Inf", DATASET_DAMAGE["NaN observation"][0])
case("export parity dataset missing", ["export", RUN, "--out", f"{C}/e", "--dataset", f"{C}/none.npz"], "no such file")
case("export teacher missing", ["export", RUN, "--out", f"{C}/e", "--teacher", f"{C}/none.npz"], "no such file")

# -- students and run directories
STUDENT_DAMAGE = {
    "checkpoint as student": (lambda c, b: shutil.copyfile(b / "run" / "checkpoint.pt", c / "s.pt"),
                              "distillation checkpoint, not a student"),
    "NaN weight": (lambda c, b: student_with(c, b, _nan_weight), "NaN or Inf"),
    "other architecture": (lambda c, b: student_with(c, b, _other_arch), "do not match its description"),
    "zero width": (lambda c, b: student_with(c, b, _hidden_zero), "malformed"),
    "NaN statistics": (lambda c, b: student_with(c, b, _nan_stats), "finite numbers"),
    "no meta": (lambda c, b: student_with(c, b, _no_meta), "malformed"),
    "random bytes": (lambda c, b: (c / "s.pt").write_bytes(b"PK\x03\x04" + bytes(100)), "not a readable"),
    "a tensor": (lambda c, b: torch.save(torch.zeros(3), c / "s.pt"), "not a bpd student"),
}
for name, (setup, msg) in STUDENT_DAMAGE.items():
    case(f"evaluate student {name}", [*EVAL, f"{C}/s.pt"], msg, setup)
    case(f"export student {name}", ["export", f"{C}/s.pt", "--out", f"{C}/e", "--episodes", "0"], msg, setup)
case("evaluate observation size mismatch", [*EVAL, RUN, "--env", "Pendulum-v1"], "has 3 and 1")
case("evaluate teacher on another env", [*EVAL, T, "--env", "MountainCarContinuous-v0"], "has 2 and 1")
case("evaluate unknown env", [*EVAL, T, "--env", "NoSuchEnv-v9"], "unknown or unavailable")
case("evaluate randomize unknown rig", [*EVAL, T, "--randomize", "no-such-rig"], "no rig 'no-such-rig'")
case("evaluate randomize rig without ranges", [*EVAL, T, "--randomize", "gym-inverted-pendulum"],
     "has no randomization block")


def _rig_with_randomization(block: str):
    def setup(c, b):
        from firmware_host.rig import RIGS
        text = (RIGS / "desktop-cartpole.yaml").read_text().split("randomization:")[0]
        (c / "rig.yaml").write_text(text + "randomization: " + block + "\nserial: {baud: 921600}\n")
    return setup


for name, block, msg in [("a list", "[0.9, 1.1]", "must be a mapping"),
                         ("a misspelt key", "{masscale: [0.9, 1.1]}", "unknown randomization key 'masscale'"),
                         ("a scalar range", "{mass_scale: 1.2}", "must be [low, high]"),
                         ("words", "{mass_scale: [light, heavy]}", "must be [low, high]"),
                         ("zero mass", "{mass_scale: [0, 0]}", "0 < low <= high"),
                         ("reversed", "{motor_gain: [1.1, 0.9]}", "0 < low <= high")]:
    case(f"evaluate randomize block {name}", [*EVAL, T, "--randomize", f"{C}/rig.yaml"], msg,
         _rig_with_randomization(block))
case("evaluate randomize a rig env with another rig's block",
     [*EVAL, T, "--env", "firmware_host.rig:bpd/desktop-cartpole-v0", "--randomize", "rotary-pendulum"],
     "give --randomize desktop-cartpole")
case("evaluate unrecognised file", [*EVAL, f"{C}/x.bin"], "unrecognised model file",
     lambda c, b: (c / "x.bin").write_bytes(b"\x00" * 10))
case("evaluate empty directory", [*EVAL, f"{C}"], "not a run directory")
case("evaluate robustness of no model", ["evaluate", f"{C}/none.npz", "--robustness"], "no such file")
case("evaluate robustness on a rig without a grid",
     ["evaluate", T, "--robustness", "--env", "firmware_host.rig:bpd/desktop-cartpole-swingup-v0"],
     "has no robustness block")
case("evaluate robustness on a task without MuJoCo", ["evaluate", f"{C}/p.npz", "--robustness"],
     "needs a MuJoCo environment", lambda c, b: _hand_teacher(c / "p.npz", env_id="Pendulum-v1", obs_dim=3))
case("evaluate robustness with randomize", ["evaluate", T, "--robustness", "--randomize", "desktop-cartpole"],
     "leave out --randomize")
case("evaluate out without robustness", ["evaluate", T, "--out", f"{C}/rob"], "--out is for --robustness")
case("evaluate robustness no episodes", ["evaluate", T, "--robustness", "--variation-episodes", "0"], "at least 1")
case("evaluate robustness out unwritable", ["evaluate", T, "--robustness", "--out", f"{RO}/rob"], "cannot be")
case("evaluate robustness with episodes", [*EVAL, T, "--robustness"], "leave out --episodes")
case("rig robustness block with an unknown key", [*EVAL, T, "--randomize", f"{C}/rig.yaml"],
     "robustness: unknown key 'pushes'",
     lambda c, b: (c / "rig.yaml").write_text((FW / "desktop-cartpole.yaml").read_text().split("robustness:")[0]
                                              + "robustness: {pushes: 3}\nserial: {baud: 921600}\n"))
case("export corrupt run config", ["export", f"{C}/run", "--out", f"{C}/e", "--episodes", "0"], "corrupt run",
     lambda c, b: _run_with(c, b, lambda r: (r / "config.json").write_text("{{")))
case("export run config a list", ["export", f"{C}/run", "--out", f"{C}/e", "--episodes", "0"], "corrupt run",
     lambda c, b: _run_with(c, b, lambda r: (r / "config.json").write_text("[]")))
case("export empty run dir", ["export", f"{C}", "--out", f"{C}/e"], "no student or teacher")
RESUME = ["distill", "--teacher", T, "--dataset", D, "--out", f"{C}/run", "--steps", "20", "--eval-every", "20",
          "--eval-episodes", "1", "--checkpoint-every", "10", "--hidden", "8", "--critic-hidden", "16", "--batch",
          "32", "--no-progress", "--resume"]
case("resume corrupt config.json", RESUME, "corrupt run configuration",
     lambda c, b: _run_with(c, b, lambda r: (r / "config.json").write_text("{oops")))
case("resume config.json a list", RESUME, "corrupt run configuration",
     lambda c, b: _run_with(c, b, lambda r: (r / "config.json").write_text("[1]")))
case("resume changed flag", RESUME[:-1] + ["--hidden", "4", "--resume"], "different configuration (hidden)",
     lambda c, b: _run_with(c, b, lambda r: None))
case("resume replaced dataset", ["distill", "--teacher", T, "--dataset", f"{C}/dataset.npz", *RESUME[5:]],
     "different configuration (dataset_sha256)", _replaced_dataset)
case("resume other teacher", ["distill", "--teacher", f"{C}/t2.npz", *RESUME[3:]], "teacher_sha256",
     lambda c, b: (_run_with(c, b, lambda r: None), _resaved_teacher(b / "teacher.npz", c / "t2.npz")))
case("another teacher's dataset", ["distill", "--teacher", f"{C}/t2.npz", "--dataset", D, *RESUME[5:-1]],
     "its labels are not this teacher's actions", lambda c, b: _hand_teacher(c / "t2.npz", seed=5))
case("resume corrupt metrics", RESUME, "corrupt metrics",
     lambda c, b: _run_with(c, b, lambda r: (r / "metrics.csv").write_text("step,time_s\nx,1\n")))
case("resume checkpoint of other networks", RESUME, "does not match this run's networks",
     lambda c, b: _run_with(c, b, _other_arch_checkpoint))
case("resume NaN in the checkpoint", RESUME, "the critic holds NaN or Inf",
     lambda c, b: _run_with(c, b, _nan_checkpoint))
case("resume garbage checkpoint", RESUME, "unreadable checkpoint",
     lambda c, b: _run_with(c, b, lambda r: (r / "checkpoint.pt").write_bytes(b"garbage")))
case("distill existing run without resume", RESUME[:-1], "already holds a run",
     lambda c, b: _run_with(c, b, lambda r: None))
case("distill into a foreign directory", DISTILL, "not a bpd run directory",
     lambda c, b: ((c / "r").mkdir(), (c / "r" / "notes.txt").write_text("mine")))
case("distill unknown env", DISTILL + ["--env", "NoSuchEnv-v9"], "unknown or unavailable")
case("distill env of other dims", DISTILL + ["--env", "Pendulum-v1"], "maps 3 observations")

# -- stable-baselines3 zips: malformed records, pickles, NaN, other architectures
SB3_DAMAGE = {
    "missing": (None, "no such file"),
    "not a zip": (lambda c, b: (c / "m.zip").write_text("hello"), "not a readable stable-baselines3"),
    "no data": (lambda c, b: zipfile.ZipFile(c / "m.zip", "w").close(), "not a readable stable-baselines3"),
    "data not JSON": (lambda c, b: _sb3_zip(c / "m.zip", data="{nope"), "not a readable stable-baselines3"),
    "data a list": (lambda c, b: _sb3_zip(c / "m.zip", data="[1, 2]"), "unexpected record"),
    "policy_class a string": (lambda c, b: _sb3_zip(c / "m.zip", data={"policy_class": "SAC"}), "malformed"),
    "low not numbers": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(low="[abc]")), "malformed"),
    "low missing": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(low=None)), "malformed"),
    "bounds sizes differ": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(high="[3. 3.]")), "differ in size"),
    "obs shape 2-D": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(shape=[2, 2])), "must be flat"),
    "obs shape text": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(shape="4")), "must be flat"),
    "discrete actions": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(kind="Discrete")), "not a Box"),
    "no env id": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(env_id=None)), "no environment; pass --env ID"),
    "pickle inside": (lambda c, b: _sb3_zip(c / "m.zip", raw_pth=_pickled()), "pickled objects"),
    "pth garbage": (lambda c, b: _sb3_zip(c / "m.zip", raw_pth=b"not a torch file"), "unreadable weights"),
    "NaN weight": (lambda c, b: _sb3_zip(c / "m.zip", sd=_sb3_sd(nan=True)), "NaN or Inf"),
    "other architecture": (lambda c, b: _sb3_zip(c / "m.zip", sd=_sb3_sd(broken=True)), "input width"),
    "obs size differs": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(shape=[5])), "does not match observation"),
    "unknown policy": (lambda c, b: _sb3_zip(c / "m.zip", data=_sb3_data(module="sb3_contrib.tqc.policies")),
                       "unsupported policy class"),
}


def _sb3_data(low="[-3.]", high="[3.]", shape=(4,), kind="Box", env_id="InvertedPendulum-v5",
              module="stable_baselines3.sac.policies") -> dict:
    space = {":type:": f"<class 'gymnasium.spaces.box.{kind}'>" if kind == "Box" else "<class 'Discrete'>"}
    if low is not None:
        space["low"] = low
    space["high"] = high
    d = {"policy_class": {"__module__": module}, "action_space": space,
         "observation_space": {"_shape": list(shape) if isinstance(shape, (list, tuple)) else shape},
         "policy_kwargs": {}}
    if env_id:
        d["env_id"] = env_id
    return d


def _sb3_sd(nan: bool = False, broken: bool = False) -> dict:
    sd = {"actor.latent_pi.0.weight": torch.ones(8, 4), "actor.latent_pi.0.bias": torch.zeros(8),
          "actor.mu.weight": torch.ones(1, 6 if broken else 8), "actor.mu.bias": torch.zeros(1)}
    if nan:
        sd["actor.mu.weight"][0, 0] = float("nan")
    return sd


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _pickled() -> bytes:
    buf = io.BytesIO()
    torch.save({"actor.mu.weight": _Payload()}, buf)
    return buf.getvalue()


for name, (setup, msg) in SB3_DAMAGE.items():
    case(f"teacher import {name}", ["teacher", "import", f"{C}/m.zip", "--out", f"{C}/t.npz"], msg, setup)

# -- exports: every consumer verifies before use
for name, (setup, msg) in EXPORT_DAMAGE.items():
    exp = f"{C}/exp"
    case(f"evaluate export {name}", [*EVAL, exp], msg if name not in ("no export.json", "not a directory")
         else "", setup)
    case(f"firmware build export {name}", ["firmware", "build", exp, "--out", f"{C}/fw"], msg, setup)
    case(f"rig sim export {name}", RIG + ["--policy", exp], msg, setup)
    case(f"hil run export {name}", [*HIL[:7], exp, *HIL[8:]], msg, setup)
    case(f"bench export {name}", ["bench", exp, "--out", f"{C}/bench", "--no-peers"], msg, setup)
case("evaluate onnx re-signed inside its export", [*EVAL, f"{C}/exp/policy.onnx"], "do not match the model hash",
     resign_onnx)
case("evaluate lone onnx with edited weights", [*EVAL, f"{C}/policy.onnx"], "do not match the model hash",
     lambda c, b: (resign_onnx(c, b), shutil.copyfile(c / "exp" / "policy.onnx", c / "policy.onnx")))
case("evaluate lone onnx with a NaN weight", [*EVAL, f"{C}/policy.onnx"], "holds NaN or Inf", _nan_onnx)
case("hil run lone onnx", [*HIL[:7], f"{C}/policy.onnx", *HIL[8:]], "no parity record",
     lambda c, b: shutil.copyfile(b / "export" / "policy.onnx", c / "policy.onnx"))
case("hil run c runtime on onnx", [*HIL[:7], f"{EXP}/policy.onnx", *HIL[8:], "--runtime", "c"], "C runtime")

# -- rigs
for name, (kw, msg) in RIG_DAMAGE.items():
    setup = lambda c, b, kw=kw: yaml_with(c, **kw)
    case(f"rig sim yaml {name}", RIG + ["--rig", f"{C}/rig.yaml"], msg, setup)
    case(f"hil run yaml {name}", [*HIL[:5], f"{C}/rig.yaml", *HIL[6:]], msg, setup)
case("rig sim build dir under a file", ["rig", "sim", "--build-dir", f"{T}/bld"], "is not a directory")
case("rig sim unknown rig", RIG + ["--rig", "warp-drive"], "no rig 'warp-drive'")

# -- trial logs
case("hil run into an existing trial", [*HIL[:9], f"{B}/trial", *HIL[10:]], "holds a trial already")
case("hil run into a non-empty directory", [*HIL[:9], f"{B}", *HIL[10:]], "is not empty")
TRIAL_DAMAGE = {
    "torn row mid-file": (_tear_middle, "malformed row 2"),
    "garbage number": (_garbage_row, "malformed row 3"),
    "corrupt summary": (lambda d: (d / "summary.json").write_text("{half"), "corrupt trial summary"),
    "summary a list": (lambda d: (d / "summary.json").write_text("[]"), "not a JSON object"),
    "no ticks": (lambda d: (d / "ticks.csv").unlink(), "no ticks.csv"),
    "header only": (lambda d: (d / "ticks.csv").write_text("# units\nepisode,step\n"), "unexpected header"),
    "binary ticks": (lambda d: (d / "ticks.csv").write_bytes(b"\xff\xfe\x00" * 50), "not a tick log"),
    "bad period": (lambda d: (d / "summary.json").write_text('{"target_period_us": -5}'), "no valid target period"),
}
for name, (change, msg) in TRIAL_DAMAGE.items():
    case(f"hil report {name}", ["hil", "report", f"{C}/trial"], msg,
         lambda c, b, change=change: trial_with(c, b, change))
case("hil report missing dir", ["hil", "report", f"{C}/none"], "no such log directory")

# -- output paths, checked before any work: a directory given for a file, a file for a directory,
# a path under a file, a place that cannot be written
FILE_OUT = {"teacher train": ["teacher", "train", "--steps", "200", "--learning-starts", "100", "--out"],
            "teacher import": ["teacher", "import", f"{B}/sb3.zip", "--out"],
            "collect": ["collect", "--teacher", T, "--steps", "50", "--no-progress", "--out"]}
DIR_OUT = {"distill": DISTILL[:5] + ["--steps", "5", "--out"],
           "export": ["export", RUN, "--episodes", "0", "--out"],
           "firmware build": FWB[:3] + ["--out"],
           "hil run": HIL[:8] + ["--no-plots", "--out"],
           "bench": BENCH[:2] + ["--no-peers", "--out"]}
for name, argv in FILE_OUT.items():
    case(f"{name} out is a directory", argv + [B], "is a directory")
    case(f"{name} out under a file", argv + [f"{T}/x.npz"], "is not a directory")
    case(f"{name} out read-only", argv + [f"{RO}/x.npz"], "not writable")
for name, argv in DIR_OUT.items():
    case(f"{name} out is a file", argv + [f"{B}/sb3.zip"], "exists and is not a directory")
    case(f"{name} out under a file", argv + [f"{T}/sub"], "is not a directory")
    case(f"{name} out read-only", argv + [f"{RO}/sub"], "not writable")
case("export into a foreign directory", ["export", RUN, "--episodes", "0", "--out", f"{B}/trial"],
     "is not an export directory")


# -- second round (issue 40): the classes 560 bad inputs found, one or more rows each

# strings from the rig YAML never reach generated C (or MuJoCo XML) unchecked
SECTION = "1 strings from the rig YAML reaching generated C"
INJECT = 'x"\n#include "/etc/passwd'
for name, kw, msg in [("name injects an include", dict(name=INJECT), "name must be 1 to 64 letters"),
                      ("name redefines a macro", dict(name="x\n#undef BPD_RIG_OBS_DIM\n#define BPD_RIG_OBS_DIM 9u"),
                       "name must be"),
                      ("name a number", dict(name=7), "name must be"),
                      ("name closes a comment", dict(name="x */ int y; /*"), "name must be"),
                      ("position_index text", dict(limits__position_index="0u\n#define X"), "limits.position_index"),
                      ("measured_velocity text", dict(sensors__measured_velocity="yes"), "true or false")]:
    setup = lambda c, b, kw=kw: yaml_with(c, **kw)
    case(f"rig sim yaml {name}", RIG + ["--rig", f"{C}/rig.yaml"], msg, setup)
    case(f"firmware build yaml {name}", FWB + ["--rig", f"{C}/rig.yaml"], msg, setup)
    case(f"hil run yaml {name}", [*HIL[:5], f"{C}/rig.yaml", *HIL[6:]], msg, setup)



def rig_from(stem: str, **changes):
    """A setup writing rig.yaml: the named rig's YAML with changes (a__b for nested keys)."""
    def setup(c: Path, b: Path) -> None:
        import yaml

        raw = yaml.safe_load((FW / f"{stem}.yaml").read_text())
        for k, v in changes.items():
            node = raw
            *path, last = k.split("__")
            for part in path:
                node = node[part]
            node[last] = v
        (c / "rig.yaml").write_text(yaml.safe_dump(raw))
    return setup


for name, stem, kw, msg in [
        ("timestep injects an XML attribute", "rotary-pendulum", dict(physics_timestep='0.001" gravity="0 0 0'),
         "physics_timestep must be a finite number"),
        ("arm mass text", "rotary-pendulum", dict(arm__mass="heavy"), "arm.mass must be a finite number"),
        ("no motor", "rotary-pendulum", dict(motor=None), "motor must be a mapping"),
        ("arm length 1e300", "rotary-pendulum", dict(arm__length=1e300), "arm.length must be at most"),
        ("initial_qpos text", "desktop-cartpole-swingup", dict(initial_qpos=["x", 0]), "initial_qpos[0]"),
        ("initial_qpos too short", "desktop-cartpole-swingup", dict(initial_qpos=[0.0]), "one position per sensor"),
        ("pole length 1e300", "desktop-cartpole", dict(pole_length=1e300), "pole_length must be at most")]:
    case(f"rig sim yaml {name}", RIG + ["--rig", f"{C}/rig.yaml"], msg, rig_from(stem, **kw))

# --out never names an input of the same command, nor a device node, FIFO or socket
SECTION = "2 data loss: --out naming an input or a device"
case("collect out is its teacher", ["collect", "--teacher", f"{C}/t.npz", "--out", f"{C}/t.npz"],
     "--out names the command's input --teacher", lambda c, b: shutil.copyfile(b / "teacher.npz", c / "t.npz"))
case("collect out a character device", ["collect", "--teacher", T, "--out", "/dev/null"], "is a character device")
case("teacher train out a character device", ["teacher", "train", "--out", "/dev/null"], "is a character device")
case("distill out a FIFO", DISTILL[:-3] + ["--out", f"{C}/ff"], "is a FIFO", lambda c, b: os.mkfifo(c / "ff"))
case("teacher import out is its zip", ["teacher", "import", f"{C}/m.zip", "--out", f"{C}/m.zip"],
     "names the command's input --sb3-zip", lambda c, b: shutil.copyfile(b / "sb3.zip", c / "m.zip"))
case("export out is its source", ["export", f"{C}/run", "--out", f"{C}/run"], "names the command's input",
     lambda c, b: _run_with(c, b, lambda r: None))
case("hil run out is its policy", [*HIL[:9], EXP, *HIL[10:]], "names the command's input --policy")
case("student select out above the run", ["student", "select", RUN, "--out", "../x.pt"], "no '..'")
case("student select out under a run file", ["student", "select", RUN, "--out", "config.json/x.pt"],
     "is not a directory")
case("student select out over the run's student", ["student", "select", RUN, "--out", "student.pt"],
     "one of the run's own files")
case("student select summary over its student", ["student", "select", RUN, "--out", "x.pt", "--summary", "x.pt"],
     "the same file as --out")

# the C weights are tied to the model hash, and the manifest lists every file the export uses
SECTION = "3 C weights tied to the model hash, manifest complete"
C_DAMAGE = {
    "weight edited and re-signed": (lambda c, b: (flip_weight(c, b), resign(c / "exp", "policy_weights.c", "policy.c")),
                                    "do not compute policy.onnx's function"),
    "C file left out of the manifest": (lambda c, b: _edit_json(export_copy(c, b) / "export.json",
                                                                lambda i: i["files"].pop("policy_weights.c")),
                                        "leaves out policy_weights.c"),
    "extra header not in the manifest": (lambda c, b: (export_copy(c, b) / "extra.h").write_text("#define X 1\n"),
                                         "leaves out extra.h"),
    "C names another model": (lambda c, b: (_other_hash_in_c(export_copy(c, b)),
                                            resign(c / "exp", "policy_weights.c")), "the C names model"),
}
for name, (setup, msg) in C_DAMAGE.items():
    case(f"evaluate export {name}", [*EVAL, f"{C}/exp"], msg, setup)
    case(f"firmware build export {name}", ["firmware", "build", f"{C}/exp", "--out", f"{C}/fw"], msg, setup)
    case(f"hil run export {name}", [*HIL[:7], f"{C}/exp", *HIL[8:]], msg, setup)
    case(f"rig sim export {name}", RIG + ["--policy", f"{C}/exp"], msg, setup)
    case(f"bench export {name}", ["bench", f"{C}/exp", "--out", f"{C}/bench", "--no-peers"], msg, setup)

# what ended in an internal error (exit 70)
SECTION = "4 internal errors (exit 70)"
MT = ["multitask", "train", "--teachers", T, T2, "--datasets", D, D2, "--out", f"{C}/mt", "--no-progress"]
case("student sweep seed -5", ["student", "sweep", RUN, "--seed", "-5"], "--seed must be at least 0")
case("baseline train sb3 with a pickle", ["baseline", "train", "--method", "kl", "--teacher", T, "--dataset", D,
                                           "--out", f"{C}/r", "--teacher-sb3", f"{C}/m.zip"], "pickled objects",
     lambda c, b: _sb3_zip(c / "m.zip", raw_pth=_pickled()))
case("multitask train no teachers", ["multitask", "train"], "required")
case("multitask train no datasets", ["multitask", "train", "--teachers", T, T2], "required")
case("multitask train temperature -1", MT + ["--temperature", "-1"], "--temperature must be above 0")
case("multitask train batch 10^10", MT + ["--batch", "10000000000"], "--batch must be at most")
case("multitask export a single-task run", ["multitask", "export", RUN, "--out", f"{C}/e"],
     f"{RUN}: a single-task run (student.pt, no multitask.npz): export it with bpd export {RUN}")
case("export a multi-task run", ["export", f"{B}/mt", "--out", f"{C}/e"],
     f"{B}/mt: a multi-task run (multitask.npz): export it with bpd multitask export {B}/mt")
case("multitask export parity 0", ["multitask", "export", f"{B}/mt", "--out", f"{C}/e", "--parity-samples", "0"],
     "--parity-samples must be at least 1")
case("teacher train hidden 2000000", ["teacher", "train", "--out", f"{C}/t.npz", "--hidden", "2000000", "2000000"],
     "--hidden: at most")
case("resume binary metrics", RESUME, "corrupt metrics",
     lambda c, b: _run_with(c, b, lambda r: (r / "metrics.csv").write_bytes(bytes(range(256)) * 8)))

# mismatched dimensions are refused when built or read, not when a device starts
SECTION = "5 mismatched dimensions"
case("firmware build policy for another rig", FWB + ["--rig", f"{C}/rig.yaml"], "the policy maps 4 observations",
     lambda c, b: yaml_with(c, sensors__counts_per_unit=[0, 0, 0], sensors__noise_std=[0] * 6))
for cmd in (["firmware", "build"], ["bench"]):  # a file of the export given for its directory: which one to give
    case(f"{cmd[0]} an export's onnx file", [*cmd, f"{C}/exp/policy.onnx", "--out", f"{C}/o"],
         f"{C}/exp/policy.onnx: a file, not an export directory; give the export it is in, {C}/exp",
         lambda c, b: export_copy(c, b))
case("export teacher of another task", ["export", RUN, "--out", f"{C}/e", "--teacher", T2, "--episodes", "0"],
     "teacher2.npz: the teacher maps 3 observations")
# the desktop cart-pole's observations are four too: its states were the parity states and the integer calibration
case("export dataset of other dimensions", ["export", RUN, "--out", f"{C}/e", "--dataset", f"{B}/dataset2.npz",
                                          "--episodes", "0"],
     f"{B}/dataset2.npz: observations have 3 dimensions, the student takes 4; give --dataset one of "
     "InvertedPendulum-v5")
case("export dataset of another task", ["export", RUN, "--out", f"{C}/e", "--dataset", f"{C}/d.npz", "--episodes", "0"],
     "d.npz: a dataset of firmware_host.rig:bpd/desktop-cartpole-v0, but the student is of InvertedPendulum-v5",
     lambda c, b: dataset_with(c, b, meta={"env_id": "firmware_host.rig:bpd/desktop-cartpole-v0",
                                           "teacher_sha256": "0" * 64}))
case("baseline teacher-sb3 of another model", ["baseline", "train", "--method", "kl", "--teacher", T, "--dataset", D,
                                               "--out", f"{C}/r", "--teacher-sb3", f"{B}/sb3.zip"],
     "its actor is not the teacher's")

# accepted nonsense
SECTION = "6 accepted nonsense"
BASE = ["baseline", "train", "--method", "kl", "--teacher", T, "--dataset", D, "--out", f"{C}/r", "--no-progress"]
case("teacher import unknown env", ["teacher", "import", f"{B}/sb3.zip", "--out", f"{C}/t.npz", "--env",
                                    "NoSuchEnv-v9"], "unknown or unavailable")
case("teacher import env of other dims", ["teacher", "import", f"{B}/sb3.zip", "--out", f"{C}/t.npz", "--env",
                                          "Pendulum-v1"], "--env Pendulum-v1 has 3 observations")
case("distill keep-return 2", DISTILL + ["--keep-return", "2"], "--keep-return must be at most 1")
case("distill prune-to-cycles 0", DISTILL + ["--prune-to-cycles", "0"], "--prune-to-cycles must be above 0 (got 0)")
case("distill prune-to-cycles -5", DISTILL + ["--prune-to-cycles", "-5"], "--prune-to-cycles must be above 0 (got -5)")
case("student select every candidate a constant", ["student", "select", RUN, "--thresholds", "-50", "--episodes", "1"],
     "threshold -50 is a constant (every path from the observations to the actions pruned)")
case("student select keep-return 1.5", ["student", "select", RUN, "--keep-return", "1.5"], "--keep-return must be")
case("rig sim action-timeout 0", RIG + ["--action-timeout", "0"], "--action-timeout must be above 0")
case("rig sim action-timeout -1", RIG + ["--action-timeout", "-1"], "--action-timeout must be above 0")
case("distill resume with no run", DISTILL + ["--resume"], "holds no run to resume")
case("baseline resume with no run", BASE + ["--resume"], "holds no run to resume")
case("teacher train resume with nothing", ["teacher", "train", "--out", f"{C}/t.npz", "--resume"],
     "holds no training to resume; leave out --resume to start one")
case("teacher train resume a finished training", ["teacher", "train", "--out", f"{C}/t.npz", "--resume"],
     "holds no training to resume (the teacher {c}/t.npz is there: its training finished); leave out --resume",
     lambda c, b: shutil.copy(b / "teacher.npz", c / "t.npz"))
case("multitask train resume with no run", MT + ["--resume"], "holds no run to resume")
case("multitask train eval-episodes 0", MT + ["--eval-episodes", "0"], "--eval-episodes must be at least 1")
case("multitask train prune-start 2", MT + ["--prune-start", "2"], "--prune-start must be at most 1")
case("baseline min-log-std 5", BASE + ["--min-log-std", "5"], "--min-log-std must be")
case("baseline value-steps -1", BASE + ["--value-steps", "-1"], "--value-steps must be at least 1")
case("baseline env-steps 10^11", BASE + ["--env-steps", "100000000000"], "--env-steps must be at most")
case("distill teacher metadata lies about its size", ["distill", "--teacher", f"{C}/t.npz", "--dataset", D, "--out",
                                                      f"{C}/r"], "metadata gives obs_dim 9",
     lambda c, b: teacher_with(c, b, meta={"obs_dim": 9}))
case("evaluate teacher of a future format", [*EVAL, f"{C}/t.npz"], "teacher format version 99",
     lambda c, b: teacher_with(c, b, meta={"format_version": 99}))

# left behind or changed on failure
SECTION = "7 left behind or changed on failure"
case("hil report trial without summary", ["hil", "report", f"{C}/trial"], "no summary.json",
     lambda c, b: trial_with(c, b, lambda d: (d / "summary.json").unlink()))
case("rig pil log under a file", ["rig", "pil", "--log", f"{T}/x.csv"], "is not a directory",
     cls="8 a hang and an orphan")


# a new engineer's walk (a real stable-baselines3 zip, Minari ids, compress): the wrong kind of input named
SECTION = "9 the wrong kind of input, named for what it is"
case("evaluate a stable-baselines3 zip", [*EVAL, f"{B}/sb3.zip"], "a stable-baselines3 model; import it first")
case("student select a file", ["student", "select", T], "teacher.npz: not a directory; give the run directory")
case("student select no such run", ["student", "select", f"{C}/none"], "none: no such run directory")
case("collect out a Minari id without --format", ["collect", "--teacher", T, "--out", "bpd/mine-v0"],
     "--out bpd/mine-v0: a Minari dataset id; add --format minari")
case("compress teacher a dataset", ["compress", "--teacher", D, "--dataset", D, "--out", f"{C}/comp"],
     "expected 'bpd-teacher'")
case("compress dataset of another task", ["compress", "--teacher", T, "--dataset", D2, "--out", f"{C}/comp"],
     "observations have 3 dimensions, the teacher expects 4")


# a stop walk: JSON an interrupted or damaged run left beside an artifact (an internal error before)
SECTION = "4 internal errors (exit 70)"


def _run_config_torn(c: Path, b: Path) -> None:
    export_copy(c, b)  # its source is ../run/student.pt: the run copied beside it, its config.json cut short
    shutil.copytree(b / "run", c / "run")
    (c / "run" / "config.json").write_text((b / "run" / "config.json").read_text()[:100])


def _build_report_torn(c: Path, b: Path) -> None:
    (c / "fw").mkdir()
    (c / "fw" / "bpd_firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
    (c / "fw" / "build_report.json").write_text('{"board": "stm32f4-pil", "ri')


case("bench export whose run's config.json is torn", ["bench", f"{C}/exp", "--out", f"{C}/bench", "--no-peers"],
     "run/config.json: corrupt run configuration (not valid JSON)", _run_config_torn)
case("teacher train work dir under a file", ["teacher", "train", "--out", f"{C}/t.npz", "--work-dir", f"{T}/w"],
     "teacher.npz/w: cannot be created (", cls="earlier rounds")
case("teacher train work dir unwritable", ["teacher", "train", "--out", f"{C}/t.npz", "--work-dir", f"{RO}/w"],
     "cannot be written (", cls="earlier rounds")
case("rig pil elf whose build_report.json is torn", ["rig", "pil", "--elf", f"{C}/fw/bpd_firmware.elf"],
     "fw/build_report.json: corrupt build report (not valid JSON)", _build_report_torn)


# plans: checked whole when read, a run root never another plan's, nothing left behind by a failed run
SECTION = "6 accepted nonsense"
def plan_with(c: Path, b: Path, **over) -> None:
    import yaml

    env = over.pop("env", "InvertedPendulum-v5")
    raw = {"name": "p", "envs": [env], "seeds": [0], "teachers": {env: str(b / "teacher.npz")},
           "dataset": {"steps": 300}, "eval": {"episodes": 1}, "methods": {"bpd": {"args": {"steps": 20}}}} | over
    (c / "plan.yaml").write_text(yaml.safe_dump(raw))


XRUN = ["experiment", "run", f"{C}/plan.yaml", "--runs", f"{C}/runs"]
XTABLE = ["experiment", "table", f"{C}/plan.yaml", "--runs", f"{C}/runs", "--out", f"{C}/tables"]
XSTATUS = ["experiment", "status", f"{C}/plan.yaml", "--runs", f"{C}/runs"]
PLAN_DAMAGE = {
    "name with ../": (dict(name="../../outside"), "plan name '../../outside'"),
    "unknown env": (dict(env="NoSuchEnv-v9"), "unknown or unavailable environment 'NoSuchEnv-v9'"),
    "a rig's YAML as env": (dict(env="rig:rigs/mine.yaml"), "a rig's YAML path is an environment of the commands, "
                            "not of a plan"),
    "a method's unknown option": (dict(methods={"bpd": {"args": {"stepz": 20}}}), "unrecognized arguments: --stepz"),
    "a method's option of the wrong type": (dict(methods={"bpd": {"args": {"steps": "many"}}}), "invalid int value"),
    "NaN in a method's args": (dict(methods={"bpd": {"args": {"actor_lr": float("nan")}}}),
                               "methods.bpd.args.actor_lr must be a finite number"),
    "NaN eval episodes": (dict(eval={"episodes": float("nan")}), "eval.episodes must be a finite number"),
    "results outside the plan's place": (dict(results="../../elsewhere"), "results must be a relative path inside"),
}
for name, (over, msg) in PLAN_DAMAGE.items():
    setup = lambda c, b, over=over: plan_with(c, b, **dict(over))
    case(f"experiment run plan {name}", XRUN, msg, setup)
    case(f"experiment table plan {name}", XTABLE, msg, setup)
    case(f"experiment status plan {name}", XSTATUS, msg, setup)
case("experiment run missing teacher", XRUN, "is missing",
     lambda c, b: plan_with(c, b, teachers={"InvertedPendulum-v5": str(c / "none.npz")}))
case("experiment run ray address that does not answer", XRUN + ["--engine", "ray", "--address", "127.0.0.1:9"],
     "does not answer", plan_with, cls="8 a hang and an orphan")
case("experiment run into another plan's run root", XRUN, "the run root of other.yaml",
     lambda c, b: (plan_with(c, b), (c / "runs").mkdir(), (c / "runs" / "plan.json").write_text(
         json.dumps({"plan": "other.yaml"}))), cls="7 left behind or changed on failure")
case("experiment run into a foreign directory", XRUN, "is not a run root",
     lambda c, b: (plan_with(c, b), (c / "runs").mkdir(), (c / "runs" / "notes.txt").write_text("mine")),
     cls="7 left behind or changed on failure")

case("experiment run runs under a file", [*XRUN[:3], "--runs", f"{T}/runs"], "teacher.npz/runs: cannot be created (",
     plan_with, cls="earlier rounds")
case("experiment run runs unwritable", [*XRUN[:3], "--runs", f"{RO}/runs"], "cannot be written (", plan_with,
     cls="earlier rounds")
case("experiment table out under a file", [*XTABLE[:5], "--out", f"{T}/tables"],
     "teacher.npz/tables: cannot be created (", plan_with, cls="earlier rounds")
case("experiment table out unwritable", [*XTABLE[:5], "--out", f"{RO}/tables"], "cannot be written (", plan_with,
     cls="earlier rounds")

def _corrupt_cell(c: Path, b: Path) -> None:
    plan_with(c, b)
    cell = c / "runs" / "InvertedPendulum-v5" / "bpd" / "seed0"
    cell.mkdir(parents=True)
    (c / "runs" / "plan.json").write_text(json.dumps({"plan": "plan.yaml"}))
    (cell / "cell.json").write_text(json.dumps({"state": "done"}))
    (cell / "result.json").write_bytes(b"\x00\xff{half")


case("experiment table corrupt cell result", XTABLE, "corrupt cell result", _corrupt_cell,
     cls="7 left behind or changed on failure")


def resign(e: Path, *names: str) -> None:
    """Record the current sha256 of the named files in export.json, as an editor covering their tracks would."""
    for n in names:
        if (e / n).is_file():
            _edit_json(e / "export.json", lambda i, n=n: i["files"].__setitem__(
                n, hashlib.sha256((e / n).read_bytes()).hexdigest()))


def _other_hash_in_c(e: Path) -> None:
    p = e / "policy_weights.c"
    p.write_text(re.sub(r'(model_hash\[\] = ")[0-9a-f]{64}', lambda m: m.group(1) + "0" * 64, p.read_text()))


# --------------------------------------------------------------------------- the runner


def _snapshot(*dirs: Path) -> dict[str, str]:
    """Every file's sha256 and every directory (an empty one left behind counts), compiler caches aside."""
    snap = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            rel = p.relative_to(d)
            if any(part.startswith(("build", ".bpd-build", "bld")) for part in rel.parts):
                continue
            if p.is_file():
                snap[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                snap[str(p)] = "directory"
    return snap


def test_table_has_the_promised_size():
    assert len(CASES) >= 150, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES), "case names are unique"


@pytest.mark.parametrize("name,argv,expect,setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, expect, setup, base, tmp_path, capsys, monkeypatch):
    c = tmp_path / "case"
    c.mkdir()
    monkeypatch.chdir(c)
    monkeypatch.delenv("BPD_DEBUG", raising=False)
    if setup is not None:
        setup(c, base)
    before = _snapshot(base, c)
    capsys.readouterr()
    try:
        rc = main([a.format(b=base, c=c) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpd: error: "), err
    assert rc not in (0, INTERNAL, None), (rc, err)
    assert expect.format(b=base, c=c) in lines[0], lines[0]
    assert _snapshot(base, c) == before, "files changed or were left behind"


# --------------------------------------------------------------------------- the promises behind the table


def test_failed_export_leaves_the_previous_export_byte_for_byte(base, tmp_path, capsys):
    out = tmp_path / "export"
    shutil.copytree(base / "export", out)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    dataset_with(tmp_path, base, "bad.npz", observations=_nan_at)  # passes the early checks, fails in parity
    rc = main(["export", str(base / "run"), "--out", str(out), "--dataset", str(tmp_path / "bad.npz"),
               "--episodes", "0", "--parity-samples", "200"])
    assert rc == 1 and "NaN" in capsys.readouterr().err
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "export"]  # no stage left behind
    # and a successful export replaces it as a whole, checked
    assert main(["export", str(base / "run"), "--out", str(out), "--episodes", "0", "--parity-samples", "100",
                 "--seed", "3"]) == 0
    from export.verify import verify_export

    info = verify_export(out)
    assert info["parity"]["pass"] is True and info["parity"]["states"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "export"]


def test_failed_first_export_leaves_no_directory(base, tmp_path, monkeypatch, capsys):
    import export.export as ex

    def fail(*a, **k):
        raise ex.BpdError("parity check failed: {}")

    monkeypatch.setattr(ex, "reference_evaluator_run", fail)
    rc = main(["export", str(base / "run"), "--out", str(tmp_path / "a" / "b" / "new"), "--episodes", "0"])
    assert rc == 1 and "parity check failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_records_parity_and_every_file(base):
    from export.verify import manifest, verify_export

    info = verify_export(base / "export")
    assert info["parity"]["pass"] is True and max(v for k, v in info["parity"].items() if "_vs_" in k) <= 1e-5
    assert info["files"] == manifest(base / "export")
    assert {"policy.onnx", "policy_weights.c", "policy_weights.h", "policy.c", "policy.h"} <= set(info["files"])


def test_hash_is_computed_from_the_weights(base, tmp_path):
    """Re-signing the file record does not help: the model hash is recomputed from the ONNX weights."""
    from bpd.errors import BpdError
    from export.c_export import model_hash
    from export.collapse import collapse
    from export.export import load_source
    from export.verify import verify_export

    net = collapse(load_source(base / "run").policy)
    assert verify_export(base / "export")["model_hash"] == model_hash(net)
    resign_onnx(tmp_path, base)
    with pytest.raises(BpdError, match="do not match the model hash"):
        verify_export(tmp_path / "exp")


def test_resume_compares_content_not_paths(base, tmp_path, capsys):
    """A moved run directory with its teacher and dataset under other paths resumes (here from its
    last checkpoint, at the final step, so it writes the student again)."""
    moved = tmp_path / "moved"
    shutil.copytree(base / "run", moved / "run")
    shutil.copyfile(base / "teacher.npz", moved / "teacher-copy.npz")
    shutil.copyfile(base / "dataset.npz", moved / "dataset-copy.npz")
    rc = main(["distill", "--teacher", str(moved / "teacher-copy.npz"), "--dataset", str(moved / "dataset-copy.npz"),
               "--out", str(moved / "run"), "--steps", "20", "--eval-every", "20", "--eval-episodes", "1",
               "--checkpoint-every", "10", "--hidden", "8", "--critic-hidden", "16", "--batch", "32", "--no-progress",
               "--resume"])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((moved / "run" / "config.json").read_text())
    assert cfg["dataset"] == str(base / "dataset.npz")  # the record of how the run began is kept
    assert cfg["dataset_sha256"] == hashlib.sha256((base / "dataset.npz").read_bytes()).hexdigest()
    summary = json.loads((moved / "run" / "summary.json").read_text())
    # distill's default warm-up ends at an evaluation (every 20 steps) or at its cap (4 x 20), then 20 steps
    warm = summary["kl_warmup_steps"]
    assert warm % 20 == 0 and 0 < warm <= 80 and summary["steps"] == warm + 20
    assert summary["student"] == "student.pt"  # relative to the run directory
    assert (moved / "run" / "student.pt").is_file()


def test_trial_log_torn_at_the_end_is_reported(base, tmp_path, capsys):
    """A trial killed while writing its last row: the report drops that row and renders the rest."""
    d = tmp_path / "trial"
    shutil.copytree(base / "trial", d)
    text = (d / "ticks.csv").read_text()
    (d / "ticks.csv").write_text(text[:-12])
    assert main(["hil", "report", str(d)]) == 0, capsys.readouterr().err
    assert json.loads((d / "summary.json").read_text())["timing"]["ticks"] == 5


def test_sb3_zip_fixture_imports(base, tmp_path, capsys):
    """The undamaged zip the table damages imports: its failures are the damage, not the fixture. The command says
    what it wrote in one line."""
    assert main(["teacher", "import", str(base / "sb3.zip"), "--out", str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"teacher: {tmp_path / 't.npz'}  ") and "-8-8-1 " in out and "parameters, from" in out, out
    from training.teacher import load_teacher

    t = load_teacher(tmp_path / "t.npz")
    assert t.hidden == [8, 8] and t.act_dim == 1


def test_nothing_non_finite_is_written(tmp_path):
    """A diverged student or a teacher with NaN is refused at the writer, and no file appears."""
    from bpd.errors import BpdError
    from training.student import BayesianStudent, save_student
    from training.teacher import load_teacher

    s = BayesianStudent(4, 1, [4])
    with torch.no_grad():
        s.layers[1].bias[0] = float("inf")
    stats = {"obs_mean": np.zeros(4), "obs_std": np.ones(4), "action_low": -np.ones(1), "action_high": np.ones(1)}
    with pytest.raises(BpdError, match="training diverged"):
        save_student(tmp_path / "student.pt", s, {"env_id": "InvertedPendulum-v5"}, stats)
    _hand_teacher(tmp_path / "t.npz")
    t = load_teacher(tmp_path / "t.npz")
    t.obs_mean[0] = np.nan
    with pytest.raises(BpdError, match="normalisation must be finite"):
        t.save(tmp_path / "t2.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]


# --------------------------------------------------------------------------- second round: what failures leave


def test_failed_multitask_export_leaves_the_previous_export_byte_for_byte(base, tmp_path, monkeypatch, capsys):
    import export.multitask as mx

    out = tmp_path / "e"
    assert main(["multitask", "export", str(base / "mt"), "--out", str(out), "--parity-samples", "50"]) == 0
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(mx, "parity_tolerance", lambda *a: 0.0)  # every task now misses parity
    capsys.readouterr()
    assert main(["multitask", "export", str(base / "mt"), "--out", str(out), "--parity-samples", "50",
                 "--seed", "4"]) == 1
    assert "C parity failed" in capsys.readouterr().err
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no stage left beside it


def test_failed_multitask_train_leaves_no_run_directory(base, tmp_path, monkeypatch, capsys):
    import training.multitask as mt
    from bpd.errors import BpdError

    def fail(*a, **k):
        raise BpdError("evaluation failed")

    monkeypatch.setattr(mt, "evaluate", fail)
    rc = main(["multitask", "train", "--teachers", str(base / "teacher.npz"), str(base / "teacher2.npz"),
               "--datasets", str(base / "dataset.npz"), str(base / "dataset2.npz"), "--out", str(tmp_path / "a" / "mt"),
               "--steps", "2", "--eval-every", "2", "--trunk", "8", "--batch", "8", "--no-progress"])
    assert rc == 1 and "evaluation failed" in capsys.readouterr().err
    assert not (tmp_path / "a" / "mt").exists()


def test_failed_firmware_build_and_rig_sim_leave_no_directory(base, tmp_path, monkeypatch, capsys):
    import firmware_host.measure.build as fb
    import firmware_host.rig.sim as sim
    from bpd.errors import BpdError

    def fail_in(d_of):
        def fail(*a, **k):
            Path(d_of(*a)).mkdir(parents=True, exist_ok=True)
            raise BpdError("compiling policy.c failed: x")
        return fail

    monkeypatch.setattr(fb, "build_firmware_image", fail_in(lambda export, target, out, *r: out))
    assert main(["firmware", "build", str(base / "export"), "--out", str(tmp_path / "fw")]) == 1
    monkeypatch.setattr(sim, "SimRig", fail_in(lambda cfg: cfg.build_dir))
    assert main(["rig", "sim", "--build-dir", str(tmp_path / "bld")]) == 1
    assert capsys.readouterr().err.count("compiling policy.c failed") == 2
    assert list(tmp_path.iterdir()) == []


def test_failed_bench_leaves_no_results_directory(base, tmp_path, monkeypatch, capsys):
    import firmware_host.measure.bench as measure
    from bpd.errors import BpdError

    def fail(info, exp, out):
        out.mkdir(parents=True)
        raise BpdError("masked export failed")

    monkeypatch.setattr(measure, "_masked_export", fail)
    monkeypatch.setattr(measure, "_run_inputs", lambda exp, given: (None, None))
    assert main(["bench", str(base / "export"), "--out", str(tmp_path / "bench"), "--no-peers"]) == 1
    assert "masked export failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_export_names_its_source_from_any_working_directory(base, tmp_path, monkeypatch):
    """Paths an export records are relative to the export, so a consumer finds its run from elsewhere."""
    from bpd.io import path_from_record
    from firmware_host.measure.bench import _run_inputs

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copytree(base / "run", tmp_path / "a" / "run")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["export", "run", "--out", "exp", "--episodes", "0", "--parity-samples", "50",
                 "--kernel", "generic"]) == 0
    info = json.loads((tmp_path / "a" / "exp" / "export.json").read_text())
    assert info["source"] == "../run/student.pt"
    monkeypatch.chdir(tmp_path / "b")
    exp = Path("../a/exp")
    assert path_from_record(info["source"], exp).resolve() == (tmp_path / "a" / "run" / "student.pt").resolve()
    teacher, dataset = _run_inputs(exp, None)  # bench's way to the run's teacher, through the run's config
    assert teacher is not None and teacher.resolve() == (base / "teacher.npz").resolve()
    assert dataset is not None and Path(dataset).resolve() == (base / "dataset.npz").resolve()


def test_a_rig_name_never_reaches_c_unchecked(tmp_path):
    """A RigSpec made in code (not through load_rig) is checked again by the generator, and the banner
    shows a file name that could end its comment only with the dangerous characters replaced."""
    import dataclasses

    from bpd.errors import BpdError
    from firmware_host.rig import load_rig
    from firmware_host.rig.codegen import generate_rig_header

    spec = load_rig("gym-inverted-pendulum")
    with pytest.raises(BpdError, match="cannot go into C"):
        generate_rig_header(dataclasses.replace(spec, name='x"\n#include "/etc/passwd'))
    odd = tmp_path / "rig*\n#define BPD_RIG_OBS_DIM 9u\n.yaml"
    odd.write_text((FW / "gym-inverted-pendulum.yaml").read_text())
    text = generate_rig_header(dataclasses.replace(spec, path=odd))
    assert "rig???define BPD_RIG_OBS_DIM 9u?.yaml (sha256 " in text.split("*/", 1)[0]
    assert text.count("#define BPD_RIG_OBS_DIM") == 1


def test_a_library_deprecation_warning_never_precedes_the_error_line(monkeypatch, capsys):
    import warnings

    import bpd_app.cli as cli
    from bpd.errors import BpdError

    def handler(ns):
        warnings.warn("this MuJoCo binding is deprecated", DeprecationWarning, stacklevel=1)
        raise BpdError("the one line")

    monkeypatch.setattr(cli, "_evaluate", handler)
    monkeypatch.delenv("BPD_DEBUG", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["evaluate", "x.npz"]) == 1
    assert seen == [] and capsys.readouterr().err == "bpd: error: the one line\n"


def test_hil_run_quotes_the_simulated_rigs_error_with_one_prefix(base, tmp_path, monkeypatch, capsys):
    """The rig process's own `bpd: error:` line is quoted without its prefix (no doubled prefix)."""
    import hil.trial as trial

    fake = tmp_path / "bpd"
    fake.write_text("#!/bin/sh\necho 'bpd: error: no pseudo-terminal for the rig' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(trial, "bpd_executable", lambda: str(fake))
    rc = main(["hil", "run", "--port", "sim", "--rig", "gym-inverted-pendulum", "--policy", str(base / "export"),
               "--out", str(tmp_path / "log"),
               "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 1 and err == ("bpd: error: the simulated rig did not start: no pseudo-terminal for the rig\n"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bpd"]
    fake.write_text("#!/bin/sh\necho 'bpd: error: qemu-system-arm not found: install qemu-system-arm' >&2\nexit 1\n")
    rc = main(["hil", "run", "--port", "pil", "--rig", "gym-inverted-pendulum", "--policy", str(base / "export"),
               "--out", str(tmp_path / "log"), "--no-plots"])  # the image in QEMU is named so, not a simulated rig
    assert rc == 1 and capsys.readouterr().err == ("bpd: error: the image under QEMU (bpd rig pil) did not start: "
                                                   "qemu-system-arm not found: install qemu-system-arm\n")


def test_an_output_named_as_its_command_is_not_taken_for_an_input(tmp_path, monkeypatch):
    """`bpd export RUN --out export` run again, `bpd bench EXPORT` (its --out defaults to `bench`) run again: the
    parser's command words are not paths, so an output of the same name as the command is no input of it; an output
    that is an input still is refused."""
    from bpd.errors import BpdError
    from bpd.io import check_outputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    (tmp_path / "bench").mkdir()
    check_outputs({"command": "export", "run": "runs/student", "out": "export"})
    check_outputs({"command": "bench", "export": "export", "out": "bench"})
    check_outputs({"command": "student", "subcommand": "bench", "out": "bench"})
    with pytest.raises(BpdError, match="--out names the command's input --export"):
        check_outputs({"command": "bench", "export": "export", "out": "export"})


def test_a_recorded_path_is_read_without_its_detour(tmp_path):
    """A run records its dataset relative to itself (../../dataset.npz); the path read back is the plain one, which
    export and bench print (was runs/student/../../dataset.npz), unless the detour runs through a symlink, where the
    plain path would be another file."""
    import os

    from bpd.io import path_from_record

    (tmp_path / "runs" / "student").mkdir(parents=True)
    (tmp_path / "dataset.npz").write_bytes(b"")
    assert path_from_record("../../dataset.npz", tmp_path / "runs" / "student") == tmp_path / "dataset.npz"
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "dataset.npz").rename(tmp_path / "elsewhere" / "dataset.npz")
    os.symlink(tmp_path / "elsewhere" / "deep", tmp_path / "link")  # link/.. is elsewhere, not tmp_path
    got = path_from_record("../dataset.npz", tmp_path / "link")
    assert got == tmp_path / "link" / ".." / "dataset.npz"
    assert got.resolve() == (tmp_path / "elsewhere" / "dataset.npz").resolve()
