"""Build images with an exported policy for Cortex-M targets or the host, and report their size.

`bpd firmware build EXPORT_DIR --target cortex-m4f` compiles the kernel, the generated
weights and a benchmark entry point into an ELF with arm-none-eabi-gcc and reports flash
(text + data), RAM (data + bss), each part's share (policy, firmware core, board) and the worst-case
stack of the whole image from its call graph (firmware_host/measure/stack.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import StagedDir, read_json, write_json
from export.cc import STRICT, find_cc

C = Path(__file__).resolve().parents[1] / "c"  # the device C sources (firmware_host/c/README.md)
BOARDS = C / "boards"
BENCH = C / "bench"
OPT = ["-O2", "-ffunction-sections", "-fdata-sections"]

TARGETS: dict[str, dict] = {
    "cortex-m0plus": {"flags": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"], "clock_mhz": 48,
                      "board": "e.g. RP2040 / STM32G0 class"},
    "cortex-m4f": {"flags": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
                   "clock_mhz": 168, "board": "e.g. STM32F4 class"},
    "cortex-m7": {"flags": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
                  "clock_mhz": 216, "board": "e.g. STM32F7 class"},
    "host": {"flags": [], "clock_mhz": None, "board": "this machine"},
}
ARM_GCC = "arm-none-eabi-gcc"


def arm_toolchain() -> str:
    gcc = shutil.which(ARM_GCC)
    if gcc is None:
        raise BpdError(f"{ARM_GCC} not found: install gcc-arm-none-eabi and libnewlib-arm-none-eabi "
                       "(`make system-deps` does it on Debian)")
    return gcc


@dataclass
class Image:
    elf: Path
    target: str
    objects: dict[str, Path]
    stack: dict[str, int]


def compile_flags(target: str, include: list[Path], defines: list[str] | None = None,
                  fast_tanh: bool = False) -> list[str]:
    """The flags every source of an image compiles with, besides its warning set (the build cache keys on them)."""
    return (TARGETS[target]["flags"] + OPT + [f"-I{p}" for p in include] + [f"-D{d}" for d in defines or []]
            + (["-DBPD_FAST_TANH"] if fast_tanh else []))


def compile_image(target: str, sources: list[Path], include: list[Path], out_dir: Path, name: str,
                  defines: list[str] | None = None, strict: set[Path] | None = None,
                  fast_tanh: bool = False, ldscript: str = "cortex-m.ld") -> Image:
    """Compile sources (strict ones with warnings as errors) and link a bare-metal image."""
    if target not in TARGETS:
        raise BpdError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    host = target == "host"
    cc = find_cc() if host else arm_toolchain()
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = compile_flags(target, include, defines, fast_tanh)
    objects: dict[str, Path] = {}
    for src in sources:
        obj = out_dir / f"{src.stem}.o"
        warn = STRICT if strict is None or src in strict else ["-std=c99", "-w"]
        _run([cc, *warn, *flags, "-fstack-usage", "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        objects[src.stem] = obj
    elf = out_dir / (name + (".elf" if not host else ""))
    if host:
        _run([cc, *flags, *map(str, objects.values()), "-lm", "-o", str(elf)], "linking")
    else:
        startup = out_dir / "startup.o"
        _run([cc, *STRICT, *flags, "-fstack-usage", "-c", str(BOARDS / "startup.c"), "-o", str(startup)],
             "compiling startup.c")
        objects["startup"] = startup
        _run([cc, *flags, "-nostartfiles", "--specs=nosys.specs", f"-L{BOARDS}", "-T", str(BOARDS / ldscript),
              "-Wl,--gc-sections", *map(str, objects.values()), "-lm", "-lc", "-lgcc", "-o", str(elf)], "linking",
             BOARDS / ldscript)
    return Image(elf, target, objects, _stack_usage(out_dir))


def _run(cmd: list[str], what: str, ldscript: Path | None = None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        if ldscript is not None and (over := overflow(p.stderr, ldscript)):
            raise BpdError(f"{what} failed: the image does not fit the memory map of {ldscript.name}: {over}")
        lines = p.stderr.splitlines()
        first = next((l for l in lines if any(k in l for k in ("undefined reference", "overflow", "will not fit",
                                                                   "error:"))), p.stderr.strip()[:300])
        raise BpdError(f"{what} failed: {first}")


def overflow(stderr: str, ldscript: Path) -> str:
    """What the linker said overflowed, with each region's size from the linker script ("FLASH (512K) by 129808 B"),
    or "" when nothing did (ld names the stage's ELF and "will not fit", not by how much or what the region holds)."""
    import re

    text = ldscript.read_text()
    for inc in re.findall(r"^\s*INCLUDE\s+(\S+)", text, re.M):  # regions may be in an included script
        text += (ldscript.parent / inc).read_text() if (ldscript.parent / inc).is_file() else ""
    sizes = dict(re.findall(r"(\w+)\s*\([^)]*\)\s*:\s*ORIGIN\s*=\s*[^,]+,\s*LENGTH\s*=\s*(\w+)", text))
    over = [f"{r} ({sizes[r] if r in sizes else 'size not in the script'}) by {n} B"
            for r, n in re.findall(r"region `(\w+)' overflowed by (\d+) bytes", stderr)]
    return "; ".join(over) + (" (a smaller policy, or a part with more memory)" if over else "")


def _stack_usage(d: Path) -> dict[str, int]:
    out = {}
    for su in d.glob("*.su"):
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                out[parts[0].rsplit(":", 1)[-1]] = int(parts[1])
    return out


def section_sizes(elf: Path) -> dict[str, int]:
    """text, data and bss of an ELF (as arm-none-eabi-size reports them), read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    sizes = {"text": 0, "data": 0, "bss": 0}
    with open(elf, "rb") as f:
        for s in ELFFile(f).iter_sections():
            flags, kind = s["sh_flags"], s["sh_type"]
            if not flags & 0x2:  # SHF_ALLOC
                continue
            if kind == "SHT_NOBITS":
                sizes["bss"] += s["sh_size"]
            elif flags & 0x1:  # SHF_WRITE
                sizes["data"] += s["sh_size"]
            else:
                sizes["text"] += s["sh_size"]
    return sizes


def symbol_sizes(elf: Path, names_from: list[Path]) -> int:
    """Bytes of the linked image that belong to symbols defined in the given objects."""
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.elf import symbol_table

    def symbols(path: Path) -> set[str]:
        with open(path, "rb") as f:
            tab = symbol_table(ELFFile(f), path)
            return {s.name for s in tab.iter_symbols() if s["st_shndx"] != "SHN_UNDEF" and s.name
                    and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")}

    wanted = set().union(*(symbols(p) for p in names_from))
    with open(elf, "rb") as f:
        tab = symbol_table(ELFFile(f), elf)
        return sum(s["st_size"] for s in tab.iter_symbols() if s.name in wanted and
                   s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT"))


FIRMWARE_SOURCES = ("bpd_fw.c", "bpd_wire.c", "bpd_msgs.c")
CSRC = C / "core"


# Board layers beside the generic one (weak stubs): sources, memory map, defines, and the QEMU
# machine that models the part (processor-in-the-loop runs the image there).
BOARD_PORTS: dict[str, dict] = {
    "generic": {"sources": [], "ldscript": "cortex-m.ld", "defines": [], "targets": ("cortex-m0plus", "cortex-m4f",
                                                                                     "cortex-m7")},
    "stm32f4": {"sources": ["board_stm32f4.c"], "ldscript": "stm32f405.ld", "defines": ["BOARD_N_IRQ=82"],
                "targets": ("cortex-m4f",)},
    "stm32f4-pil": {"sources": ["board_stm32f4.c", "plant_link.c"], "ldscript": "stm32f405.ld",
                    "defines": ["BOARD_N_IRQ=82", "BOARD_NO_CLOCK_TREE", "BOARD_CYCLES_FROM_SYSTICK"],
                    "targets": ("cortex-m4f",), "qemu_machine": "netduinoplus2"},
    # A real rig on a Nucleo-64 STM32F446RE: encoders, PWM motor, end stops from the rig's wiring block.
    # QEMU has no model of this board: the image is built (strict flags), not run.
    "nucleo-f446": {"sources": ["board_nucleo_f446.c"], "core_sources": ["bpd_drivers.c"],
                    "ldscript": "stm32f446.ld", "defines": ["BOARD_N_IRQ=96"], "targets": ("cortex-m4f",),
                    "needs_wiring": "nucleo-f446"},
}


def stage_classical(classical_dir: Path, spec, export_dir: Path, out_dir: Path) -> tuple[list[Path], list[str], Path]:
    """A classical export for hand-over mode, checked (rig/device.py), its C files copied as classical.c and
    classical_weights.c (object names apart from the learned policy's) beside its headers: (sources, defines,
    include directory)."""
    from firmware_host.rig.device import classical_sources

    srcs, _ = classical_sources(classical_dir, spec, export_dir)
    stage = out_dir / "classical"
    stage.mkdir(parents=True, exist_ok=True)
    for f in Path(classical_dir).glob("*.h"):
        shutil.copyfile(f, stage / f.name)
    named = [stage / "classical.c", stage / "classical_weights.c"]
    for src, dst in zip(srcs, named):
        shutil.copyfile(src, dst)
    return named, ["BPD_HAVE_CLASSICAL"], stage


def build_firmware_image(export_dir: Path, target: str, out_dir: Path, fast_tanh: bool = False,
                         rig: str = "gym-inverted-pendulum", board: str = "generic",
                         classical: Path | None = None) -> Image:
    """The firmware: core, wire codec, board layer, the rig's generated configuration and the
    exported policy; with classical, hand-over mode's classical controller (a `--handover` classical export)."""
    from export.c_export import check_export_dir
    from firmware_host.rig import load_rig
    from firmware_host.rig.codegen import write_rig_header
    from firmware_host.rig.device import selftest_defines

    export_dir = check_export_dir(export_dir)
    spec = load_rig(rig)
    info = read_json(export_dir / "export.json", "export record") if (export_dir / "export.json").is_file() else {}
    if isinstance(info, dict) and "obs_dim" in info and "act_dim" in info:
        check_policy_fits_rig(info, spec, export_dir)
    if target == "host":  # the software device of the simulated rig: core, host HAL and policy
        from firmware_host.rig.device import build_device_library

        lib = build_device_library(out_dir, spec, export_dir, classical, fast_tanh)
        objs = {}
        for src in (export_dir / "policy.c", export_dir / "policy_weights.c"):
            obj = out_dir / f"{src.stem}.o"
            _run([find_cc(), *STRICT, *OPT, "-fPIC", *(["-DBPD_FAST_TANH"] if fast_tanh else []), f"-I{export_dir}",
                  "-c", str(src), "-o", str(obj)],
                 f"compiling {src.name}")
            objs[src.stem] = obj
        return Image(lib, "host", objs, {})
    if board not in BOARD_PORTS:
        raise BpdError(f"unknown board {board!r}; choose from {', '.join(BOARD_PORTS)}")
    port = BOARD_PORTS[board]
    if target not in port["targets"]:
        raise BpdError(f"board {board} is a {', '.join(port['targets'])} part, not {target}")
    check_board_wiring(board, spec)
    rig_dir = write_rig_header(spec, out_dir / "rig").parent
    srcs = [export_dir / "policy.c", export_dir / "policy_weights.c", BOARDS / "board_cortexm.c",
            *(BOARDS / f for f in port["sources"]), *(CSRC / f for f in FIRMWARE_SOURCES),
            *(CSRC / f for f in port.get("core_sources", []))]
    clock = TARGETS[target]["clock_mhz"] * 1_000_000
    selftest = [d.removeprefix("-D") for d in selftest_defines(export_dir)]
    include = [export_dir, CSRC, BOARDS, rig_dir]
    if classical is not None:
        c_srcs, c_defines, stage = stage_classical(classical, spec, export_dir, out_dir)
        srcs, selftest, include = srcs + c_srcs, selftest + c_defines, [export_dir, stage, *include[1:]]
    return compile_image(target, srcs, include, out_dir, "bpd_firmware",
                         fast_tanh=fast_tanh, defines=[f"BOARD_CPU_HZ={clock}u", *port["defines"], *selftest],
                         ldscript=port["ldscript"])


def build_bpd_image(export_dir: Path, target: str, out_dir: Path, fast_tanh: bool = False) -> Image:
    from export.c_export import check_export_dir

    export_dir = check_export_dir(export_dir)
    srcs = [export_dir / "policy.c", export_dir / "policy_weights.c", BENCH / "bench_bpd.c", BENCH / "bench_main.c"]
    return compile_image(target, srcs, [export_dir, BENCH], out_dir, "bpd_bench", fast_tanh=fast_tanh)


# a controller's working memory (BPD_SCRATCH_FLOATS), declared by its caller (the board layer, the bench's entry
# point): the controller's RAM, whichever object declares it
CALLER_OWNED = {"scratch": "policy", "classical_scratch": "classical"}


def part_sizes(elf: Path, parts: dict[str, list[Path]]) -> dict[str, dict[str, int]]:
    """Flash (text, rodata, data image) and RAM (data, bss) of the symbols each part's objects define (a
    controller's scratch buffer its own: CALLER_OWNED); what no part defines (C library, libgcc, start-up, vector
    table, padding) is "other"."""
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.elf import symbol_table

    def defined(path: Path) -> set[str]:
        with open(path, "rb") as f:
            tab = symbol_table(ELFFile(f), path)
            return {s.name for s in tab.iter_symbols() if s["st_shndx"] != "SHN_UNDEF" and s.name
                    and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")}

    owner: dict[str, str] = {}
    for part_name, objs in parts.items():
        for o in objs:
            for name in defined(o):
                owner.setdefault(name, part_name)
    owner |= {name: part for name, part in CALLER_OWNED.items() if part in parts}
    out = {p: {"flash_bytes": 0, "ram_bytes": 0} for p in parts}
    with open(elf, "rb") as f:
        e = ELFFile(f)
        secs = list(e.iter_sections())
        for s in symbol_table(e, elf).iter_symbols():
            part = owner.get(s.name)
            if part is None or s["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT") or \
                    not isinstance(s["st_shndx"], int):
                continue
            sec = secs[s["st_shndx"]]
            if sec["sh_type"] == "SHT_NOBITS":
                out[part]["ram_bytes"] += s["st_size"]
            elif sec["sh_flags"] & 0x1:  # .data: an image in flash, a copy in RAM
                out[part]["flash_bytes"] += s["st_size"]
                out[part]["ram_bytes"] += s["st_size"]
            else:
                out[part]["flash_bytes"] += s["st_size"]
    sizes = section_sizes(elf)
    out["other"] = {"flash_bytes": sizes["text"] + sizes["data"] - sum(v["flash_bytes"] for v in out.values()),
                    "ram_bytes": sizes["data"] + sizes["bss"] - sum(v["ram_bytes"] for v in out.values())}
    return out


def image_report(img: Image, policy_objects: list[str], parts: dict[str, list[str]] | None = None) -> dict:
    """Flash, RAM and per-part shares of an image, and (Cortex-M) the worst-case stack of the whole
    image from its call graph (firmware_host/measure/stack.py), never a sum over a few functions."""
    sizes = section_sizes(img.elf)
    share = symbol_sizes(img.elf, [img.objects[o] for o in policy_objects])
    parts = parts or {"policy": policy_objects}
    rep: dict[str, Any] = {"target": img.target, "elf": str(img.elf), "flash_bytes": sizes["text"] + sizes["data"],
           "ram_bytes": sizes["data"] + sizes["bss"], "sections": sizes, "policy_bytes": share,
           "parts": part_sizes(img.elf, {p: [img.objects[o] for o in objs if o in img.objects]
                                         for p, objs in parts.items()}),
           "stack_bytes_by_function": dict(sorted(img.stack.items()))}
    if img.target != "host":
        try:
            import capstone  # noqa: F401  (the 'emulate' extra)
        except ImportError:
            rep["stack"] = {"note": "stack not analysed: install the 'emulate' extra (capstone)"}
            return rep
        from firmware_host.measure.stack import stack_report

        st = stack_report(img.elf, img.target, img.stack)
        rep["stack"] = st
        rep["stack_bytes"] = st.get("total_bytes")
        if rep["stack_bytes"] is not None:
            rep["ram_with_stack_bytes"] = rep["ram_bytes"] + rep["stack_bytes"]
    return rep


FIRMWARE_PARTS = {"policy": ["policy", "policy_weights"], "firmware core": ["bpd_fw", "bpd_wire", "bpd_msgs"],
                  "board": ["board_cortexm", "board_stm32f4", "plant_link", "startup", "board_nucleo_f446",
                            "bpd_drivers"]}


@dataclass
class FirmwareBuildConfig:
    export: str = field(help="export directory (from `bpd export`)", positional=True)
    target: str = field("cortex-m4f", help="what to build for", choices=tuple(TARGETS))
    out: str | None = field(None, help="build directory (default: EXPORT/build-TARGET-IMAGE, "
                                       "and -BOARD-RIG for a firmware image)")
    fast_tanh: bool = field(False, help="the generic kernel's rational tanh in place of libm's tanhf (-DBPD_FAST_TANH; "
                                        "the other kernels compile in the tanh their export chose)")
    image: str = field("firmware", help="firmware (core + board layer + policy) or bench (policy + entry point)",
                       choices=("firmware", "bench"))
    rig: str | None = field(None, help="rig name or YAML whose configuration the firmware is built for (default: "
                            "the shipped rig of the export's environment; where there is none, the bench image)")
    board: str = field("generic", help="board layer: generic (weak stubs), stm32f4, stm32f4-pil "
                       "(STM32F4 with the plant on USART2, for `bpd rig pil`), or nucleo-f446 (a real rig: "
                       "encoders, PWM motor, end stops from the rig's wiring block)", choices=tuple(BOARD_PORTS))
    classical: str | None = field(None, help="a classical export for hand-over mode (`bpd classical export "
                                  "--handover`), linked beside the policy (docs/protocol.md, rule 17)")


def check_board_wiring(board: str, spec) -> None:
    """A board that drives a real rig (its port names pins) needs the rig's wiring block for it: one line."""
    port = BOARD_PORTS.get(board, {})
    if "needs_wiring" in port and (spec.wiring or {}).get("board") != port["needs_wiring"]:
        raise BpdError(f"board {board} drives a real rig: rig {spec.name} needs a wiring block for "
                       f"{port['needs_wiring']} (see firmware_host/rig/rigs/desktop-cartpole.yaml)")


def firmware_build(cfg: FirmwareBuildConfig) -> dict:
    from bpd.io import check_output_dir
    from export.verify import verify_export
    from firmware_host.rig import load_rig
    from firmware_host.rig.classical import check_designed_for

    if cfg.board != "generic" and (cfg.target == "host" or cfg.image == "bench"):
        raise BpdError(f"--board {cfg.board} is a Cortex-M firmware image's board layer: not for "
                       + ("--target host" if cfg.target == "host" else "--image bench"))
    if cfg.board in BOARD_PORTS and cfg.target not in BOARD_PORTS[cfg.board]["targets"] + ("host",):  # before --rig
        raise BpdError(f"board {cfg.board} is a {', '.join(BOARD_PORTS[cfg.board]['targets'])} part, not {cfg.target}")
    if cfg.image == "bench" and cfg.rig is not None:  # it was left out without a word
        raise BpdError(f"--rig {cfg.rig}: a bench image (the policy and an entry point) has no rig; leave out --rig, "
                       "or build the firmware (--image firmware)")
    info = verify_export(cfg.export)  # parity passed and the files are the ones it checked
    if cfg.fast_tanh and "BPD_FAST_TANH" not in (Path(cfg.export) / "policy.c").read_text(errors="replace"):
        raise BpdError(f"--fast-tanh: the {info.get('kernel', 'generic')} kernel of {cfg.export} compiles in the tanh "
                       "its export chose, so there is none to choose at build time (the rational tanh is the generic "
                       "kernel's: `bpd export --kernel generic`); leave out --fast-tanh")
    if cfg.image == "firmware" and cfg.rig is None:
        cfg = _default_rig(cfg, info)
    if cfg.image == "firmware":
        spec = load_rig(_rig(cfg))
        check_board_wiring(cfg.board, spec)  # before the note below, which says the image is built
        check_policy_fits_rig(info, spec, cfg.export)
        check_designed_for(cfg.export, spec)  # a classical controller's design is its rig's, or it is refused
        if note := spec.plant_note(cfg.export, info.get("env_id"), "the image is built; on the rig it runs a policy "
                                   "of another plant"):  # the same sizes: said, not refused, as a trial says it
            print(note, file=sys.stderr)
    if cfg.classical is not None:
        if cfg.image != "firmware":
            raise BpdError("--classical links hand-over mode's controller into a firmware image, not a bench image")
        verify_export(cfg.classical, handover=True)
    default = f"build-{cfg.target}-{cfg.image}" + (f"-{cfg.board}-{load_rig(_rig(cfg)).name}" if cfg.image == "firmware"
                                                    else "") + ("-handover" if cfg.classical else "")
    out = Path(cfg.out or Path(cfg.export) / default)
    check_output_dir(out, "build_report.json", "a firmware build")
    with StagedDir(out) as stage:  # built beside out, swapped in whole: a stopped build leaves the previous one
        rep = _build(cfg, stage.path, out)
        stage.commit()
    return rep


def _rig(cfg: FirmwareBuildConfig) -> str:
    """The rig of a firmware image's build, once firmware_build has chosen the default."""
    if cfg.rig is None:
        raise BpdError("a firmware image needs a rig (--rig)")
    return cfg.rig


def _default_rig(cfg: FirmwareBuildConfig, info: dict) -> FirmwareBuildConfig:
    """No --rig: the shipped rig of the export's environment, else (a policy of a task no rig here is of, such
    as Hopper) the bench image, which measures the policy on the part, with a note. A real board's firmware
    needs its rig named whatever the export (its wiring and limits go to hardware), and a hand-over's where no
    shipped rig is of the export's environment."""
    from dataclasses import replace

    from firmware_host.rig.yaml_env import rig_of

    if cfg.board != "generic":  # a real board's pins, scales and limits come from the rig: never guessed
        raise BpdError(f"--board {cfg.board}: name the rig it drives (--rig NAME or your rig's YAML); its wiring, "
                       "counts per unit and limits are compiled in")
    rig = rig_of(info.get("env_id"), int(info["obs_dim"]), int(info["act_dim"]))
    if rig is not None:
        return replace(cfg, rig=rig)
    what = f"policy of {info.get('env_id') or 'an unnamed environment'}"
    if cfg.classical is not None:
        raise BpdError(f"{cfg.export}: no shipped rig is of this {what}: name the rig (--rig NAME or a YAML)")
    print(f"bpd: note: no shipped rig is of this {what}: building the bench image (the policy and an entry point: "
          "its flash, RAM and stack on the part); a rig's firmware: --rig NAME or a YAML", file=sys.stderr)
    return replace(cfg, image="bench")


def check_policy_fits_rig(info: dict, spec, export: str | Path) -> None:
    """The policy's input and output sizes against the rig's, at build time (not when the device starts)."""
    if (int(info["obs_dim"]), int(info["act_dim"])) != (spec.obs_dim, spec.act_dim):
        raise BpdError(f"{export}: the policy maps {info['obs_dim']} observations to {info['act_dim']} actions, "
                       f"rig {spec.name} has {spec.obs_dim} and {spec.act_dim}; export a policy for this rig")


def _build(cfg: FirmwareBuildConfig, stage: Path, out: Path) -> dict:
    """Build into stage (the directory that becomes out); the report names the image where it will be."""
    from firmware_host.rig import load_rig

    if cfg.image == "firmware":
        img = build_firmware_image(Path(cfg.export), cfg.target, stage, cfg.fast_tanh, _rig(cfg), cfg.board,
                                   Path(cfg.classical) if cfg.classical else None)
    else:
        img = build_bpd_image(Path(cfg.export), cfg.target, stage, cfg.fast_tanh)
    parts = FIRMWARE_PARTS if cfg.image == "firmware" else None
    if cfg.classical:  # hand-over mode's controller, staged as classical.c and classical_weights.c
        parts = {**FIRMWARE_PARTS, "classical": ["classical", "classical_weights"]}
    rep = image_report(img, ["policy", "policy_weights"], parts) | {"image": cfg.image,
                                                                    "clock_mhz": TARGETS[cfg.target]["clock_mhz"],
                                                                    "fast_tanh": cfg.fast_tanh}
    if cfg.image == "firmware":
        rep |= {"rig": load_rig(_rig(cfg)).name, "board": cfg.board, "handover": cfg.classical is not None}
    rep["elf"] = str(out / img.elf.relative_to(stage))
    write_json(stage / "build_report.json", rep)
    return rep
