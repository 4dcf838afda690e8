"""The packages stack one way: bpd (base) <- training <- export <- firmware_host <- hil <- bpd_app (top).
Inside firmware_host the rooms stack the same way: wire <- rig <- measure <- cli, and its C tree (c/)
holds no Python.

Every import in every module (at module level or inside a function) is read from the source with
ast, so a lazy import that climbs a layer is caught as surely as a top-level one.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["bpd", "training", "export", "firmware_host", "hil", "bpd_app"]
# firmware_host's rooms, base first: the wire protocol, the (simulated) rig, measurement, the CLI.
FIRMWARE_ROOMS = ["firmware_host.wire", "firmware_host.rig", "firmware_host.measure", "firmware_host.cli"]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module` (the cycle test
            # keeps the names that are modules)
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_a_layer_above_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1:])
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in _modules(package) for m in sorted(_imports(p))
           if m.split(".")[0] in above]
    assert not bad, "\n".join(bad)


def _room(module: str) -> str | None:
    return next((r for r in FIRMWARE_ROOMS if module == r or module.startswith(r + ".")), None)


@pytest.mark.parametrize("room", FIRMWARE_ROOMS)
def test_no_firmware_room_imports_a_room_above_it(room):
    above = FIRMWARE_ROOMS[FIRMWARE_ROOMS.index(room) + 1:]
    path = ROOT / Path(*room.split("."))
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    assert files and all(f.is_file() for f in files), room
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in files for m in sorted(_imports(p)) if _room(m) in above]
    assert not bad, "\n".join(bad)


def test_every_firmware_module_is_in_a_room():
    loose = [str(p.relative_to(ROOT)) for p in _modules("firmware_host")
             if p != ROOT / "firmware_host" / "__init__.py"
             and _room(".".join(p.relative_to(ROOT).with_suffix("").parts)) is None]
    assert not loose, loose


def test_the_firmware_c_tree_holds_no_python():
    c = ROOT / "firmware_host" / "c"
    assert (c / "core" / "bpd_fw.c").is_file()
    assert not sorted(c.rglob("*.py")), "firmware_host/c/ is the device's C sources only"


def test_no_import_cycle_between_modules():
    """Within and across packages, the module import graph has no cycle."""
    graph: dict[str, set[str]] = {}
    names = {}
    for pkg in LAYERS:
        for p in _modules(pkg):
            mod = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names[mod] = p
    for mod, p in names.items():
        graph[mod] = {m for m in _imports(p) if m in names and m != mod}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [m, n]))
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from bpd_app.cli import main\n    return main\n")
    assert "bpd_app.cli" in _imports(f)


def test_no_module_is_longer_than_a_sitting():
    """Every module of the packages reads in one sitting: at most 600 lines (issue 38's rule)."""
    long = [f"{p.relative_to(ROOT)}: {n} lines" for pkg in LAYERS for p in _modules(pkg)
            if (n := len(p.read_text().splitlines())) > 600]
    assert not long, "\n".join(long)


def test_reading_and_checking_every_plan_imports_no_torch(tmp_path):
    """`bpd experiment status` reads a plan and builds and checks every cell's command (torch takes some 2 s to
    import, on every status, table and runner start): distill's choices live in training/distill_config.py and a
    teacher file is read without training.device."""
    import subprocess
    import sys

    script = ("import sys\nfrom bpd_app.cli import main\n"
              "for plan in sys.argv[2:]:\n"
              "    sys.argv = ['bpd', 'experiment', 'status', plan, '--runs', sys.argv[1]]\n"
              "    try:\n        main()\n    except SystemExit as e:\n        assert not e.code, plan\n"
              "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    plans = sorted(str(p) for p in (ROOT / "benchmarks" / "plans").glob("*.yaml"))
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path / "runs"), *plans], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_no_command_reads_its_options_with_torch():
    """`bpd CMD --help` and a mistyped flag come back at once: every command's options live in a module that imports
    no torch (some 2 s on every call: export, student select and sweep, multitask train and compress took 2-3.5 s to
    print their help before their options moved to *_config modules)."""
    import subprocess
    import sys

    script = ("import importlib, sys\nfrom bpd_app.cli import _configs\n"
              "for name, (dotted, *_) in _configs().items():\n"
              "    importlib.import_module(dotted.split(':')[0])\n"
              "    if 'torch' in sys.modules:\n        print(name)\n        break\n"
              "else:\n    print('none')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "none", f"`bpd {p.stdout.strip()}` imports torch to read its options"
