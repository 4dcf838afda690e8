"""`bpd export --package`: the export as a library for CMake, Zephyr, PlatformIO and Arduino.

Every format's example is built for Cortex-M4F with arm-none-eabi-gcc (-mcpu=cortex-m4 -mfloat-abi=hard
-mfpu=fpv4-sp-d16 -mthumb) under the strict warning set of export/cc.py. CMake really configures and
builds the example (through add_subdirectory and through an installed bpd::policy found by find_package),
and the built image's policy_step is run under the emulated Cortex-M4F against the host build. Zephyr,
PlatformIO and Arduino, whose own tools are not installed here, have their manifests checked against the
fields each format documents as required, and their examples compiled the way that build system would:
the sources and include paths the manifest names, the sketch as C++ behind <Arduino.h>.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from bpd.errors import BpdError
from export.c_export import CPolicy, c_float
from export.cc import STRICT
from export.kernels import KERNEL_FILES
from export.package import (
    ARDUINO_SKETCH,
    CHOICES,
    CORTEX_M4F,
    FORMATS,
    HEADER,
    SOURCES,
    formats_of,
    library_version,
    write_package,
)
from export.verify import manifest, verify_export
from tests.conftest import pendulum_export, run_bpd

ARM_GCC = "arm-none-eabi-gcc"
ARM_GXX = "arm-none-eabi-g++"
LINK = ["--specs=nosys.specs"]  # newlib's stubbed system calls: a bare-metal image that links


def need_arm(*tools: str) -> None:
    for tool in (ARM_GCC, *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (make system-deps installs it): the Cortex-M4F build cannot run")


def _meta(d: Path) -> dict:
    info = json.loads((d / "export.json").read_text())
    return {k: info[k] for k in ("env_id", "obs_dim", "act_dim", "model_hash")} | {"kernel": info.get("kernel",
                                                                                                    "generic")}


def _packaged(tmp: Path, choice: str) -> Path:
    """The committed pendulum export with a package of choice written into it; returns the export."""
    d = tmp / f"export-{choice}"
    shutil.copytree(pendulum_export(), d)
    meta = _meta(d)
    obs = np.linspace(-0.2, 0.2, meta["obs_dim"]).astype(np.float32)
    write_package(d, choice, meta, obs, CPolicy(d, build_dir=tmp / f"host-{choice}").act(obs[None])[0])
    return d


@pytest.fixture(scope="module")
def pkg_all(tmp_path_factory) -> Path:
    return _packaged(tmp_path_factory.mktemp("pkg"), "all") / "package"


def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def assert_cortex_m4f_image(elf: Path, model_hash: str) -> dict[str, int]:
    """A linked Armv7E-M image with single-precision VFP arguments, holding the export's policy (its model
    hash string, the kernel's entry point and the example's policy_step); returns its symbols."""
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.elf import symbol_table

    attrs = _run(["arm-none-eabi-readelf", "-A", str(elf)])
    assert re.search(r"Tag_CPU_arch: v7E-M", attrs), attrs
    assert re.search(r"Tag_FP_arch: VFPv4-D16", attrs), attrs
    assert re.search(r"Tag_ABI_VFP_args: VFP registers", attrs), attrs  # -mfloat-abi=hard
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        assert ef["e_machine"] == "EM_ARM" and ef["e_type"] == "ET_EXEC"
        syms = {s.name: s["st_value"] for s in symbol_table(ef, elf).iter_symbols() if s.name}
        rodata = b"".join(s.data() for s in ef.iter_sections() if s.name in (".rodata", ".text"))
    assert {"bpd_policy_run", "bpd_model", "bpd_model_hash", "policy_step", "main"} <= set(syms)
    assert model_hash.encode() + b"\0" in rodata
    return syms


# ---------------------------------------------------------------- the choice

def test_package_choices_and_a_bad_value_is_one_line(tmp_path):
    assert CHOICES == ("none", "cmake", "zephyr", "platformio", "arduino", "all")
    assert formats_of("all") == FORMATS and formats_of("none") == () and formats_of("zephyr") == ("zephyr",)
    with pytest.raises(BpdError, match=r"^--package 'conan': choose one of none, cmake, .*all$"):
        formats_of("conan")
    p = run_bpd("export", str(tmp_path), "--out", str(tmp_path / "x"), "--package", "conan", check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--package" in lines[0] and "invalid choice: 'conan'" in lines[0], p.stderr
    assert not (tmp_path / "x").exists()
    from export.export import ExportConfig, run_export
    with pytest.raises(BpdError, match=r"^--package 'conan': choose one of"):
        run_export(ExportConfig(source=str(tmp_path), out=str(tmp_path / "x"), package="conan"))


def test_a_package_name_renames_every_c_cmake_zephyr_and_pio_name_and_nothing_else():
    """--package-name swing: bpd_x and BPD_X (CONFIG_BPD_X and assembly-local labels .Lbpd_x too), bpd::policy and
    bpd-policy take the name; words do not; a bad name is one line."""
    from export.package import check_name, renamed

    text = ("bpd_policy_run(&bpd_model, o, a, s); BPD_OBS_DIM CONFIG_BPD_POLICY bpd::policy lib_deps = bpd-policy "
            "src/bpd_policy.h cmake/bpd_policyConfig.cmake generated by bpd export; b .Lbpd_t1_net_bad0 abpd_x")
    assert renamed(text, "swing") == (
        "swing_policy_run(&swing_model, o, a, s); SWING_OBS_DIM CONFIG_SWING_POLICY swing::policy lib_deps = "
        "swing-policy src/swing_policy.h cmake/swing_policyConfig.cmake generated by bpd export; b .Lswing_t1_net_bad0 "
        "abpd_x")
    assert renamed("bpd::policy bpd-policy", "arm_2") == "arm_2::policy arm-2-policy"
    assert renamed("install(EXPORT t NAMESPACE bpd:: DESTINATION d)", "swing") == (
        "install(EXPORT t NAMESPACE swing:: DESTINATION d)")  # the installed target is swing::policy too
    assert renamed("# -DBPD_POLICY_FAST_TANH=ON; -DBPD_INT_FP=0: not", "swing") == (
        "# -DSWING_POLICY_FAST_TANH=ON; -DSWING_INT_FP=0: not")  # the macro a comment tells the user to define
    assert renamed(text, "bpd") == text
    for bad in ("Swing", "9x", "a__b", "a_b_c", "x" * 33, "x" * 20 + "_" + "y" * 12, "", "swing-up", "swing_"):
        with pytest.raises(BpdError, match="--package-name .*a lower-case C name"):
            check_name(bad)
    for good in ("swing", "arm_2", "x" * 17, "x" * 32, "x" * 20 + "_" + "y" * 11):  # the 32 characters it says
        check_name(good)


def test_a_package_url_is_a_web_address_both_manifests_take(tmp_path):
    """--package-url goes into library.json's homepage, which PlatformIO's manifest schema refuses unless it is a URL
    of a scheme and a domain (at most 255 characters), and into library.properties' one-line url=: anything else is
    one line before the export starts, not a library PlatformIO will not load (`not-a-url` was written as given)."""
    from export.package import check_url

    for good in ("", "https://github.com/acme/swing", "http://example.org", "https://localhost:8080/x?y=1#z",
                 "https://192.168.1.2/lib", "https://example.org/" + "x" * 235):
        check_url(good)
    for bad in ("not-a-url", "example.org", "https://example", "https://ex ample.org", "https://example.org/a b",
                "git@github.com:acme/swing.git", "https://example.org/x\nname=evil", "ftp://example.org/x",
                "https://example.org/" + "x" * 236):
        with pytest.raises(BpdError, match=r"^--package-url .*: a web address, http:// or https:// then a host"):
            check_url(bad)
    d = tmp_path / "export"
    shutil.copytree(pendulum_export(), d)
    with pytest.raises(BpdError, match="^--package-url 'not-a-url': a web address"):
        write_package(d, "platformio", _meta(d) | {"url": "not-a-url"}, np.zeros(4))
    assert not (d / "package").exists()
    p = run_bpd("export", str(tmp_path), "--out", str(tmp_path / "x"), "--package", "all", "--package-url",
                "not-a-url", check=False)
    assert p.returncode == 1 and p.stdout == "", p.stderr
    assert p.stderr.startswith("bpd: error: --package-url 'not-a-url': a web address") and p.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


LEFT = re.compile(r"\S*(?:bpd_|BPD_|bpd::|bpd-policy)\S*")  # a name of the bpd package


def test_a_named_package_keeps_no_bpd_name(tmp_path):
    """Every file of a package named swing names swing's names only: the macros its comments tell the user to
    define too (-DSWING_POLICY_FAST_TANH=ON in CMakeLists.txt, -DSWING_FAST_TANH in policy.h), which the code
    reads under the new name."""
    d = tmp_path / "export"
    shutil.copytree(pendulum_export(), d)
    write_package(d, "all", _meta(d) | {"name": "swing"}, np.zeros(4))
    left = {p.name: LEFT.findall(p.read_text()) for p in (d / "package").rglob("*") if p.is_file()}
    assert not any(left.values()), {k: v for k, v in left.items() if v}
    cmake = (d / "package" / "CMakeLists.txt").read_text()
    assert "-DSWING_POLICY_FAST_TANH=ON" in cmake and 'option(SWING_POLICY_FAST_TANH "' in cmake


def test_a_named_package_keeps_the_users_own_words(tmp_path):
    """--package-name renames the package's names, not what the user gave: --package-url, the environment id and
    the command each generated file says it was made by (its paths) stay as they were, bpd_ in them or not."""
    d = tmp_path / "export"
    shutil.copytree(pendulum_export(), d)
    weights = d / "policy_weights.c"
    command = "bpd export runs/bpd_swing --out exports/bpd_swing --package all --package-name swing"
    weights.write_text(re.sub(r"regenerate with: [^\n]*", f"regenerate with: {command}", weights.read_text(), count=1))
    url, env = "https://github.com/acme/bpd_controllers", "bpd_lab/Swing-v0"
    write_package(d, "all", _meta(d) | {"name": "swing", "url": url, "env_id": env}, np.zeros(4))
    pkg = d / "package"
    assert f"url={url}\n" in (pkg / "library.properties").read_text()
    assert json.loads((pkg / "library.json").read_text())["homepage"] == url
    kconfig = (pkg / "zephyr" / "Kconfig").read_text()
    assert f'config SWING_POLICY\n\tbool "bpd policy for {env}"' in kconfig
    src = (pkg / "src" / "policy_weights.c").read_text()
    assert f" * regenerate with: {command}\n" in src and "swing_model" in src and "bpd_model" not in src


def test_two_packages_of_two_names_link_into_one_program(tmp_path):
    """Two exports' packages in one firmware: under their own names (the default bpd and swing) every symbol, macro,
    header guard and CMake target is apart, so one program includes both headers, links both, and each gives the
    export's own action (the host build of the same C); the same with CMake, both folders added to one project."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    obs = np.linspace(-0.2, 0.2, 4).astype(np.float32)
    dirs = {}
    for name in ("bpd", "swing"):
        d = tmp_path / f"export-{name}"
        shutil.copytree(pendulum_export(), d)
        meta = _meta(d) | {"name": name}
        assert meta["obs_dim"] == 4
        write_package(d, "cmake", meta, obs)
        dirs[name] = d / "package"
    assert (dirs["swing"] / "src" / "swing_policy.h").is_file() and not (dirs["swing"] / "src" / HEADER).exists()
    main = tmp_path / "main.c"
    literal = ", ".join(c_float(float(x)) for x in obs)
    main.write_text("#include <stdio.h>\n#include \"bpd_policy.h\"\n#include \"swing_policy.h\"\n"
                    "static float s1[BPD_SCRATCH_FLOATS], s2[SWING_SCRATCH_FLOATS];\n"
                    "int main(void)\n{\n    const float obs[BPD_OBS_DIM] = {" + literal + "};\n"
                    "    float a[BPD_ACT_DIM], b[SWING_ACT_DIM];\n"
                    "    int ra = bpd_policy_run(&bpd_model, obs, a, s1);\n"
                    "    int rb = swing_policy_run(&swing_model, obs, b, s2);\n"
                    "    printf(\"%d %.9g %d %.9g\\n\", ra, (double)a[0], rb, (double)b[0]);\n    return 0;\n}\n")
    srcs = [str(p / "src" / f) for p in dirs.values() for f in ("policy.c", "policy_weights.c")]
    objs = []
    for i, src in enumerate(srcs):  # each package's C on its own include path, as its build would compile it
        objs.append(str(tmp_path / f"{i}.o"))
        _run(["gcc", *STRICT, "-O2", "-I", str(Path(src).parent), "-c", src, "-o", objs[-1]])
    _run(["gcc", *STRICT, "-I", str(dirs["bpd"] / "src"), "-I", str(dirs["swing"] / "src"), "-c", str(main), "-o",
          str(tmp_path / "main.o")])
    _run(["gcc", str(tmp_path / "main.o"), *objs, "-lm", "-o", str(tmp_path / "two")])
    want = CPolicy(pendulum_export(), build_dir=tmp_path / "host").act(obs[None])[0][0]
    ra, a, rb, b = _run([str(tmp_path / "two")]).split()
    assert (ra, rb) == ("0", "0") and float(a) == pytest.approx(want, abs=1e-6) == float(b)
    if shutil.which("cmake") is None:
        return
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.c").write_text(main.read_text())
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(two LANGUAGES C)\n"
        f"add_subdirectory({dirs['bpd']} bpd)\nadd_subdirectory({dirs['swing']} swing)\n"
        "add_executable(two main.c)\ntarget_link_libraries(two PRIVATE bpd::policy swing::policy)\n")
    _run(["cmake", "-S", str(proj), "-B", str(proj / "b")])
    _run(["cmake", "--build", str(proj / "b")])
    assert _run([str(proj / "b" / "two")]).split() == [ra, a, rb, b]


def test_two_packages_on_one_include_path_each_header_takes_its_own_parts(tmp_path):
    """Both packages' src/ on the include path, both holding policy.h, policy_weights.h and policy_config.h: a unit
    including bpd_policy.h and swing_policy.h, in either order and with either src/ first, reads each package's own
    parts (a quoted include looks beside its includer first); a bare #include "policy.h" takes the first src/, which
    the package README says (include only NAME_policy.h)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = {}
    for name in ("bpd", "swing"):
        d = tmp_path / name
        shutil.copytree(pendulum_export(), d)
        write_package(d, "cmake", _meta(d) | {"name": name}, np.zeros(4))
        src[name] = d / "package" / "src"
    for first, second in (("bpd", "swing"), ("swing", "bpd")):
        unit = tmp_path / f"{first}_first.c"
        unit.write_text(f'#include "{first}_policy.h"\n#include "{second}_policy.h"\n#include "policy.h"\n')
        for path in ((src["bpd"], src["swing"]), (src["swing"], src["bpd"])):
            deps = _run(["gcc", "-MM", *(f"-I{p}" for p in path), str(unit)]).replace("\\\n", " ").split()
            read = {Path(f).resolve() for f in deps if f.endswith(".h")}
            assert read == {src[n] / f"{n}_policy.h" for n in src} | {src[n] / f for n in src
                                                                       for f in ("policy.h", "policy_weights.h")}
            macro = _run(["gcc", "-E", "-dM", *(f"-I{p}" for p in path), "-include", "policy.h", "-x", "c",
                          "/dev/null"])
            assert f"#define {path[0].parent.parent.name.upper()}_POLICY_H" in macro  # the first src/'s policy.h
    readme = (src["swing"].parent / "README.md").read_text()
    assert "Include only `swing_policy.h`: its parts (`policy.h`, `policy_weights.h`, `policy_config.h`)" in readme


def test_two_packages_installed_in_one_prefix_are_found_under_their_names(tmp_path):
    """cmake --install of the bpd and the swing package into one prefix: each exports its own imported target
    (bpd::policy, swing::policy: the install's NAMESPACE takes the name too), a project finds both by find_package
    and links both, and the swing package's own example finds swing::policy there."""
    if shutil.which("cmake") is None or shutil.which("gcc") is None:
        pytest.skip("cmake or gcc not installed")
    prefix = tmp_path / "prefix"
    for name in ("bpd", "swing"):
        d = tmp_path / f"export-{name}"
        shutil.copytree(pendulum_export(), d)
        write_package(d, "cmake", _meta(d) | {"name": name}, np.zeros(4))
        _run(["cmake", "-S", str(d / "package"), "-B", str(tmp_path / f"lib-{name}")])
        _run(["cmake", "--build", str(tmp_path / f"lib-{name}")])
        _run(["cmake", "--install", str(tmp_path / f"lib-{name}"), "--prefix", str(prefix)])
        targets = (prefix / "lib" / "cmake" / f"{name}_policy" / f"{name}_policyTargets.cmake").read_text()
        assert f"add_library({name}::policy STATIC IMPORTED)" in targets
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.c").write_text("#include \"bpd_policy.h\"\n#include \"swing_policy.h\"\n"
                                 "static float s1[BPD_SCRATCH_FLOATS], s2[SWING_SCRATCH_FLOATS];\n"
                                 "int main(void)\n{\n    const float obs[BPD_OBS_DIM] = {0};\n"
                                 "    float a[BPD_ACT_DIM], b[SWING_ACT_DIM];\n"
                                 "    return bpd_policy_run(&bpd_model, obs, a, s1) + "
                                 "swing_policy_run(&swing_model, obs, b, s2);\n}\n")
    (proj / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.13)\nproject(two LANGUAGES C)\n"
                                         "find_package(bpd_policy CONFIG REQUIRED)\n"
                                         "find_package(swing_policy CONFIG REQUIRED)\n"
                                         "add_executable(two main.c)\n"
                                         "target_link_libraries(two PRIVATE bpd::policy swing::policy)\n")
    _run(["cmake", "-S", str(proj), "-B", str(proj / "b"), f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", str(proj / "b")])
    _run([str(proj / "b" / "two")])
    example = tmp_path / "export-swing" / "package" / "examples" / "cmake"
    _run(["cmake", "-S", str(example), "-B", str(tmp_path / "app"), f"-DCMAKE_PREFIX_PATH={prefix}"])
    assert not (tmp_path / "app" / "swing_policy").exists()  # the installed target, not the folder
    _run(["cmake", "--build", str(tmp_path / "app")])
    assert _run([str(tmp_path / "app" / "swing_policy_example")]).startswith("swing_policy_run: rc 0")


def test_each_format_writes_its_manifests_and_only_those(tmp_path):
    """One format: the sources in src/, its own manifests and example, no other format's; none: no package."""
    own = {"cmake": {"CMakeLists.txt", "cmake/bpd_policyConfig.cmake", "examples/cmake/CMakeLists.txt",
                     "examples/cmake/main.c", "examples/cmake/cortex-m4f.cmake"},
           "zephyr": {"zephyr/module.yml", "zephyr/Kconfig", "zephyr/CMakeLists.txt", "examples/zephyr/CMakeLists.txt",
                      "examples/zephyr/prj.conf", "examples/zephyr/sample.yaml", "examples/zephyr/src/main.c"},
           "platformio": {"library.json", "examples/platformio/platformio.ini", "examples/platformio/src/main.c"},
           "arduino": {"library.properties", f"examples/{ARDUINO_SKETCH}/{ARDUINO_SKETCH}.ino"}}
    common = {"README.md", f"src/{HEADER}"} | {f"src/{f}" for f in KERNEL_FILES}
    for fmt in FORMATS:
        pkg = _packaged(tmp_path, fmt) / "package"
        files = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
        assert files == common | own[fmt], fmt
        for f in KERNEL_FILES:  # the export's C, byte for byte
            assert (pkg / "src" / f).read_bytes() == (pkg.parent / f).read_bytes()
    d = tmp_path / "none"
    shutil.copytree(pendulum_export(), d)
    assert write_package(d, "none", _meta(d), np.zeros(4)) == {} and not (d / "package").exists()
    with pytest.raises(BpdError, match="example observation has 3 values, the policy reads 4"):
        write_package(d, "cmake", _meta(d), np.zeros(3))
    write_package(d, "all", _meta(d) | {"url": "https://example.org/pendulum"}, np.zeros(4))  # --package-url
    assert "url=https://example.org/pendulum\n" in (d / "package" / "library.properties").read_text()
    assert json.loads((d / "package" / "library.json").read_text())["homepage"] == "https://example.org/pendulum"
    assert "action = {" not in (d / "package" / "examples" / "cmake" / "main.c").read_text()  # none was given


# ---------------------------------------------------------------- CMake

def _cmake_build(src: Path, build: Path, toolchain: Path, *defs: str) -> str:
    env = dict(os.environ, CFLAGS=" ".join(STRICT[1:]))  # the toolchain file's CPU flags come on top
    _run(["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
          "-DCMAKE_BUILD_TYPE=MinSizeRel", *defs], env=env)
    return _run(["cmake", "--build", str(build), "--verbose"], env=env)


def test_cmake_example_builds_for_cortex_m4f_through_add_subdirectory(pkg_all, tmp_path):
    """cmake configures and builds examples/cmake with its toolchain file: the library target bpd::policy
    comes from the package folder (add_subdirectory), every source compiled for Cortex-M4F with the strict
    warnings, and the image holds this export's policy."""
    need_arm("cmake")
    app = pkg_all / "examples" / "cmake"
    log = _cmake_build(app, tmp_path / "b", app / "cortex-m4f.cmake")
    compiles = [line for line in log.splitlines() if ARM_GCC in line and " -c " in line]
    assert {Path(line.split(" -c ")[1].split()[0]).name for line in compiles} == {"policy.c", "policy_weights.c",
                                                                                 "main.c"}
    for line in compiles:
        assert all(f in line.split() for f in (*CORTEX_M4F, "-Werror", "-Wextra", "-std=c99")), line
    assert (tmp_path / "b" / "bpd_policy" / "libbpd_policy.a").is_file()  # the package's own target
    assert_cortex_m4f_image(tmp_path / "b" / "bpd_policy_example", _meta(pkg_all.parent)["model_hash"])


def test_the_cmake_example_builds_its_own_model_not_another_installed_under_its_name(tmp_path):
    """Every export's library is bpd_policy at bpd's version, so an installed package of another policy answered the
    example's find_package and was linked without a word. The installed config names its model's hash; the example of
    a package of another model builds its own folder (and says why), that of the installed model takes the install."""
    if shutil.which("cmake") is None or shutil.which("gcc") is None:
        pytest.skip("cmake or gcc not installed")
    prefix = tmp_path / "prefix"
    builds = {}
    for which, model_hash in (("installed", "a" * 64), ("other", "b" * 64)):
        d = tmp_path / f"export-{which}"
        shutil.copytree(pendulum_export(), d)
        write_package(d, "cmake", _meta(d) | {"model_hash": model_hash}, np.zeros(4))
        builds[which] = d / "package"
    _run(["cmake", "-S", str(builds["installed"]), "-B", str(tmp_path / "lib")])
    _run(["cmake", "--build", str(tmp_path / "lib")])
    _run(["cmake", "--install", str(tmp_path / "lib"), "--prefix", str(prefix)])
    config = (prefix / "lib" / "cmake" / "bpd_policy" / "bpd_policyConfig.cmake").read_text()
    assert f'set(bpd_policy_MODEL_HASH "{"a" * 64}")' in config
    out = _run(["cmake", "-S", str(builds["other"] / "examples" / "cmake"), "-B", str(tmp_path / "other"),
                f"-DCMAKE_PREFIX_PATH={prefix}"])
    assert f"runs model {'a' * 64}, not this package's: building this package's own folder" in out
    assert (tmp_path / "other" / "bpd_policy").is_dir()  # the folder was added
    _run(["cmake", "--build", str(tmp_path / "other")])  # and it is the one linked, not the installed library
    link = (tmp_path / "other" / "CMakeFiles" / "bpd_policy_example.dir" / "link.txt").read_text()
    assert "bpd_policy/libbpd_policy.a" in link and str(prefix) not in link
    _run(["cmake", "-S", str(builds["installed"] / "examples" / "cmake"), "-B", str(tmp_path / "same"),
          f"-DCMAKE_PREFIX_PATH={prefix}"])
    assert not (tmp_path / "same" / "bpd_policy").exists()  # the installed one: its model


def test_cmake_installed_target_is_found_by_find_package(pkg_all, tmp_path):
    """The library built and installed on its own exports bpd::policy; the example, pointed at the prefix,
    takes it through find_package (not the folder) and links."""
    need_arm("cmake")
    toolchain = pkg_all / "examples" / "cmake" / "cortex-m4f.cmake"
    _cmake_build(pkg_all, tmp_path / "lib", toolchain)
    prefix = tmp_path / "prefix"
    _run(["cmake", "--install", str(tmp_path / "lib"), "--prefix", str(prefix)])
    targets = (prefix / "lib" / "cmake" / "bpd_policy" / "bpd_policyTargets.cmake").read_text()
    assert "add_library(bpd::policy STATIC IMPORTED)" in targets
    assert {p.name for p in (prefix / "include" / "bpd_policy").iterdir()} == {
        HEADER, "policy.h", "policy_weights.h", "policy_config.h"}
    log = _cmake_build(pkg_all / "examples" / "cmake", tmp_path / "app", toolchain, f"-DCMAKE_PREFIX_PATH={prefix}")
    cache = (tmp_path / "app" / "CMakeCache.txt").read_text()
    assert f"bpd_policy_DIR:PATH={prefix}/lib/cmake/bpd_policy" in cache
    assert not (tmp_path / "app" / "bpd_policy").exists()  # the folder was not added
    assert str(prefix / "lib" / "libbpd_policy.a") in log
    assert_cortex_m4f_image(tmp_path / "app" / "bpd_policy_example", _meta(pkg_all.parent)["model_hash"])
    # find_package with a version (as a project pins what it was built against): the installed version file answers
    assert (prefix / "lib" / "cmake" / "bpd_policy" / "bpd_policyConfigVersion.cmake").is_file()
    version = library_version()
    major = int(version.split(".")[0])
    for asked, found in ((version, True), (f"{major + 1}.0.0", False)):
        proj = tmp_path / f"pinned-{asked}"
        proj.mkdir()
        (proj / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.13)\nproject(pinned LANGUAGES C)\n"
                                             f"find_package(bpd_policy {asked} CONFIG)\n"
                                             "message(STATUS \"bpd_policy found: ${bpd_policy_FOUND} "
                                             "${bpd_policy_VERSION}\")\n")
        cfg = _run(["cmake", "-S", str(proj), "-B", str(proj / "b"), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
                    f"-DCMAKE_PREFIX_PATH={prefix}"])
        assert (f"bpd_policy found: 1 {version}" if found else "bpd_policy found: 0") in cfg, cfg


def _emulated_matches_host(elf: Path, export: Path, tol: float) -> None:
    """policy_step in the Cortex-M4F image, run by the emulator, against the host build of the export's C."""
    pytest.importorskip("unicorn")
    from export.verify import probe_observations
    from firmware_host.measure.emulate import Emulator

    host = CPolicy(export, build_dir=elf.parent / "host")
    em = Emulator(elf, "cortex-m4f", entry="policy_step")
    obs = probe_observations(export / "policy.onnx", host.obs_dim, 12)
    got = np.array([em.call(o, host.act_dim).outputs for o in obs])
    assert np.abs(got - host.act(obs)).max() <= tol
    bad = em.call(np.full(host.obs_dim, np.nan, np.float32), host.act_dim)
    assert bad.return_code == -1  # BPD_ERR_NONFINITE, the safe action written


def test_cmake_example_computes_the_policy_on_an_emulated_cortex_m4f(pkg_all, tmp_path):
    need_arm("cmake")
    _cmake_build(pkg_all / "examples" / "cmake", tmp_path / "b", pkg_all / "examples" / "cmake" / "cortex-m4f.cmake")
    _emulated_matches_host(tmp_path / "b" / "bpd_policy_example", pkg_all.parent, 1e-5)


# ---------------------------------------------------------------- compiling as an ecosystem would

def _compile_and_link(sources: list[Path], include: list[Path], out: Path, defines: list[str] = (),
                      cxx: list[Path] = (), extra: list[str] = ()) -> Path:
    """Each C source with gcc (strict), each C++ source with g++, all for Cortex-M4F, linked into out."""
    out.mkdir(parents=True, exist_ok=True)
    flags = [*CORTEX_M4F, "-O2", *(f"-I{p}" for p in include), *(f"-D{d}" for d in defines), *extra]
    objs = []
    for i, src in enumerate([*sources, *cxx]):
        obj = out / f"{i}_{src.stem}.o"
        if src in cxx:
            _run([ARM_GXX, "-std=gnu++11", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti", *flags,
                  "-c", str(src), "-o", str(obj)])
        else:
            _run([ARM_GCC, *STRICT, *flags, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = out / "app.elf"
    _run([ARM_GXX if cxx else ARM_GCC, *CORTEX_M4F, *LINK, *objs, "-lm", "-o", str(elf)])
    return elf


def _cmake_list(text: str, command: str, module_dir: Path) -> list[Path]:
    """The arguments of one call of a CMake command in a Zephyr module's CMakeLists.txt, as paths."""
    m = re.search(rf"{command}\(([^)]*)\)", text)
    assert m, f"no {command}() call"
    return [Path(a.replace("${ZEPHYR_CURRENT_MODULE_DIR}", str(module_dir))) for a in m.group(1).split()]


def test_zephyr_module_manifest_and_example_for_cortex_m4f(pkg_all, tmp_path):
    """zephyr/module.yml names the module and its build (cmake: the folder holding its CMakeLists.txt,
    kconfig: the Kconfig file, both relative to the module root) and its samples; the Kconfig defines the
    symbol the CMake and the example's prj.conf use; the example (its main.c) is compiled with the sources and
    include directories the module's CMakeLists.txt gives the zephyr library."""
    need_arm()
    module = yaml.safe_load((pkg_all / "zephyr" / "module.yml").read_text())
    assert re.fullmatch(r"[A-Za-z0-9_-]+", module["name"])
    assert (pkg_all / module["build"]["cmake"] / "CMakeLists.txt").is_file()
    kconfig = (pkg_all / module["build"]["kconfig"]).read_text()
    symbols = set(re.findall(r"^config (\w+)$", kconfig, re.M))
    assert {"BPD_POLICY", "BPD_POLICY_FAST_TANH"} <= symbols
    assert re.search(r"config BPD_POLICY\n\tbool \"[^\"]+\"\n\tselect REQUIRES_FULL_LIBC", kconfig)  # tanhf, fmaf
    assert all((pkg_all / s / "CMakeLists.txt").is_file() for s in module["samples"])
    cmake = (pkg_all / "zephyr" / "CMakeLists.txt").read_text()
    assert cmake.lstrip().startswith("#") and "if(CONFIG_BPD_POLICY)" in cmake
    assert "zephyr_library_named(bpd_policy)" in cmake
    sources = _cmake_list(cmake, "zephyr_library_sources", pkg_all)
    include = _cmake_list(cmake, "zephyr_include_directories", pkg_all)
    assert sorted(p.name for p in sources) == ["policy.c", "policy_weights.c"] and all(p.is_file() for p in sources)
    app = pkg_all / "examples" / "zephyr"
    conf = dict(line.split("=", 1) for line in (app / "prj.conf").read_text().split())
    assert conf == {"CONFIG_BPD_POLICY": "y"} and "BPD_POLICY" in symbols
    app_cmake = (app / "CMakeLists.txt").read_text()
    assert "find_package(Zephyr REQUIRED" in app_cmake and "target_sources(app PRIVATE src/main.c)" in app_cmake
    extra = re.search(r"list\(APPEND ZEPHYR_EXTRA_MODULES \$\{CMAKE_CURRENT_SOURCE_DIR\}/([^)]*)\)", app_cmake)
    assert extra and ((app / extra.group(1)).resolve() / "zephyr" / "module.yml").is_file()
    for fast in ((), ("BPD_FAST_TANH",)):  # CONFIG_BPD_POLICY_FAST_TANH off and on
        elf = _compile_and_link([*sources, app / "src" / "main.c"], include, tmp_path / f"z{len(fast)}", list(fast))
        assert_cortex_m4f_image(elf, _meta(pkg_all.parent)["model_hash"])


def test_the_zephyr_sample_yaml_is_twisters_and_matches_what_the_example_prints(tmp_path):
    """examples/zephyr/sample.yaml, which twister (and a sample in a module's `samples`) needs: the sample's name and
    one test named as Zephyr's are (dotted, tags a string, integration platforms a list), its console harness's
    regex a line the example prints, run on the host from the module's sources (the model's hash in it); under
    --package-name the test and the line carry the name."""
    cc = shutil.which("cc") or pytest.skip("no host C compiler")
    for name in ("bpd", "swing"):
        d = tmp_path / f"export-{name}"
        shutil.copytree(pendulum_export(), d)
        meta = _meta(d) | {"name": name}
        write_package(d, "zephyr", meta, np.zeros(meta["obs_dim"], np.float32))
        pkg = d / "package"
        sample = yaml.safe_load((pkg / "examples" / "zephyr" / "sample.yaml").read_text())
        assert set(sample) == {"sample", "tests"} and sample["sample"]["name"] == f"{name}_policy example"
        assert isinstance(sample["sample"]["description"], str)
        (test_name, test), = sample["tests"].items()
        assert test_name == f"sample.{name}_policy.run" and re.fullmatch(r"[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)+", test_name)
        assert isinstance(test["tags"], str) and test["integration_platforms"] == ["qemu_cortex_m3"]
        assert test["harness"] == "console" and test["harness_config"]["type"] == "one_line"
        (regex,) = test["harness_config"]["regex"]
        assert meta["model_hash"][:16] in regex
        module = yaml.safe_load((pkg / "zephyr" / "module.yml").read_text())
        assert module["samples"] == ["examples/zephyr"]
        srcs = _cmake_list((pkg / "zephyr" / "CMakeLists.txt").read_text(), "zephyr_library_sources", pkg)
        exe = tmp_path / name
        _run([cc, "-std=c99", f"-I{pkg / 'src'}", *map(str, srcs), str(pkg / "examples" / "zephyr" / "src" / "main.c"),
              "-lm", "-o", str(exe)])
        printed = _run([str(exe)]).splitlines()
        assert re.search(regex, printed[0]) and printed[0].startswith(f"{name}_policy_run: rc 0"), (regex, printed)


def test_platformio_library_manifest_and_example_for_cortex_m4f(pkg_all, tmp_path):
    """library.json has the fields PlatformIO requires (name, version, description) in their documented
    form, its build section names folders that exist, its headers are there and its example is; the
    example project's platformio.ini targets a Cortex-M4F board and takes this folder as a library. The
    example is compiled as PlatformIO builds a library: every C source under build.srcDir, with srcDir and
    includeDir on the include path."""
    need_arm()
    lib = json.loads((pkg_all / "library.json").read_text())
    assert {"name", "version", "description"} <= set(lib)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", lib["name"]) and len(lib["name"]) <= 50
    assert re.fullmatch(r"\d+\.\d+\.\d+", lib["version"]) and 0 < len(lib["description"]) <= 255
    assert lib["frameworks"] == "*" and lib["platforms"] == "*"
    src, inc = pkg_all / lib["build"]["srcDir"], pkg_all / lib["build"]["includeDir"]
    assert lib["build"]["flags"] == "-lm"  # tanhf: PlatformIO's native platform links no libm of its own
    assert all((inc / h).is_file() for h in lib["headers"])
    for ex in lib["examples"]:
        assert all((pkg_all / ex["base"] / f).is_file() for f in ex["files"])
    ini = configparser.ConfigParser()
    ini.read(pkg_all / "examples" / "platformio" / "platformio.ini")
    env = ini["env:cortex_m4f"]
    assert (env["platform"], env["board"], env["framework"]) == ("ststm32", "nucleo_f401re", "stm32cube")
    name, _, url = env["lib_deps"].partition("=symlink://")
    assert name == lib["name"]
    assert ((pkg_all / "examples" / "platformio" / url).resolve() / "library.json").is_file()
    sources = sorted(src.rglob("*.c"))
    assert [p.name for p in sources] == ["policy.c", "policy_weights.c"]
    elf = _compile_and_link([*sources, pkg_all / "examples" / "platformio" / "src" / "main.c"], [inc, src],
                            tmp_path / "pio")
    assert_cortex_m4f_image(elf, _meta(pkg_all.parent)["model_hash"])


# a stand-in for the Arduino core's header and its serial port, so that the sketch compiles as the
# Arduino builder compiles it (C++, <Arduino.h> first) and links
ARDUINO_H = """#ifndef ARDUINO_H
#define ARDUINO_H
struct SerialPort {
  void begin(unsigned long baud);
  void print(const char *s);
  void println(int v);
  void println(double v, int digits);
};
extern SerialPort Serial;
void delay(unsigned long ms);
void setup(void);
void loop(void);
#endif
"""
ARDUINO_CORE = """#include <Arduino.h>
SerialPort Serial;
void SerialPort::begin(unsigned long) {}
void SerialPort::print(const char *) {}
void SerialPort::println(int) {}
void SerialPort::println(double, int) {}
void delay(unsigned long) {}
int main(void) { setup(); loop(); return 0; }
"""


def test_arduino_library_manifest_and_sketch_for_cortex_m4f(pkg_all, tmp_path):
    """library.properties holds every field the Arduino library specification requires (arduino-lint's
    strict level: name, version, author, maintainer, sentence, paragraph, url, category, architectures) in
    its documented form, the sources sit under src/ (the 1.5 layout) and the sketch is
    examples/NAME/NAME.ino. The sketch is compiled as the Arduino builder does (C++, <Arduino.h> first,
    the library's src/ on the include path, its .c files with gcc)."""
    need_arm(ARM_GXX)
    props = dict(line.split("=", 1) for line in (pkg_all / "library.properties").read_text().splitlines() if line)
    required = {"name", "version", "author", "maintainer", "sentence", "paragraph", "url", "category", "architectures"}
    assert required <= set(props) and all(props[k].strip() for k in required)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", props["name"]) and len(props["name"]) <= 63
    assert not props["name"].lower().startswith("arduino")
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["category"] in ("Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
                                 "Timing", "Data Storage", "Data Processing", "Other")
    assert props["architectures"] == "*" and re.fullmatch(r"https?://\S+", props["url"])
    assert not props["paragraph"].startswith(props["sentence"])  # the sentence is prepended to it
    assert all((pkg_all / "src" / h.strip()).is_file() for h in props["includes"].split(","))
    assert not any((pkg_all / d).exists() for d in ("utility",))  # src/ layout: no legacy utility folder
    sketch = pkg_all / "examples" / ARDUINO_SKETCH / f"{ARDUINO_SKETCH}.ino"
    core = tmp_path / "core"
    core.mkdir()
    (core / "Arduino.h").write_text(ARDUINO_H)
    (core / "core.cpp").write_text(ARDUINO_CORE)
    cpp = tmp_path / "sketch" / f"{ARDUINO_SKETCH}.ino.cpp"
    cpp.parent.mkdir()
    cpp.write_text("#include <Arduino.h>\n" + sketch.read_text())
    elf = _compile_and_link(sorted((pkg_all / "src").rglob("*.c")), [core, pkg_all / "src"], tmp_path / "ard",
                            cxx=[cpp, core / "core.cpp"])
    attrs = _run(["arm-none-eabi-readelf", "-A", str(elf)])
    assert "Tag_CPU_arch: v7E-M" in attrs and "Tag_ABI_VFP_args: VFP registers" in attrs
    syms = set(_run(["arm-none-eabi-nm", "-C", str(elf)]).splitlines())
    defined = {line.split(" ", 2)[2] for line in syms if line.count(" ") >= 2 and line.split(" ")[1] in "TtRr"}
    assert {"bpd_policy_run", "bpd_model", "setup()", "loop()"} <= defined


# ---------------------------------------------------------------- a real export

@pytest.fixture(scope="module", params=["compact", "generated", "integer"])
def real_export(request, tiny_pipeline, tmp_path_factory) -> tuple[Path, str]:
    """`bpd export --package all` on the tiny pipeline's student with each straight-line kernel forced (their
    Cortex-M4F forms: the compact kernel's assembly, the generated kernel's literals, the integer kernel's
    SMLAD); the export and what `bpd export` printed."""
    out = tmp_path_factory.mktemp(f"real-{request.param}") / "exp"
    p = run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--kernel", request.param, "--package",
                "all", "--episodes", "0", "--parity-samples", "500")
    return out, p.stdout


def test_export_with_package_verifies(real_export, tmp_path):
    """The package's files are in export.json's file record and the export verifies; the package holds the
    shipped kernel's C byte for byte and the examples' observation is the network's input offset (the
    dataset's mean) with the host build's action recorded; a changed package file fails verification."""
    import onnx
    import onnx.numpy_helper as nh

    out, stdout = real_export
    assert "package for cmake, zephyr, platformio, arduino: package/ in the export" in stdout
    assert stdout.rstrip().endswith("the library's web page is the placeholder https://example.com/bpd_policy "
                                    "(library.json, library.properties): give --package-url before you publish it")
    info = verify_export(out)
    pkg = out / "package"
    listed = {k.removeprefix("package/") for k in info["files"] if k.startswith("package/")}
    assert listed == {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
    assert {"CMakeLists.txt", "zephyr/module.yml", "library.json", "library.properties"} <= listed
    assert info["files"] == manifest(out)
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["package"]["formats"] == list(FORMATS) and rep["kernel"]["kind"] == info["kernel"]
    for f in KERNEL_FILES:
        assert (pkg / "src" / f).read_bytes() == (out / f).read_bytes()
    inits = {t.name: nh.to_array(t) for t in onnx.load(str(out / "policy.onnx")).graph.initializer}
    obs = np.asarray(rep["package"]["example_observation"], np.float32)
    assert np.array_equal(obs, inits["in_offset"].reshape(-1).astype(np.float32))
    host_action = CPolicy(out, build_dir=tmp_path / "host").act(obs[None])[0]
    assert np.allclose(rep["package"]["example_action_host"], host_action, rtol=0, atol=1e-6)
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    readme = edited / "package" / "README.md"
    readme.write_text(readme.read_text() + "edited\n")
    with pytest.raises(BpdError, match="package/README.md: changed after export"):
        verify_export(edited)
    # a file added to src/ is built in by PlatformIO and Arduino (every file there): refused; an example's own
    # build folder (cmake -B build inside examples/cmake, as its comment says) is not the package's sources
    added = tmp_path / "added"
    shutil.copytree(out, added)
    (added / "package" / "examples" / "cmake" / "build").mkdir()
    (added / "package" / "examples" / "cmake" / "build" / "CMakeCache.txt").write_text("")
    assert verify_export(added)["files"] == info["files"]
    (added / "package" / "src" / "extra.c").write_text("int extra;\n")
    with pytest.raises(BpdError, match="package/src/extra.c is not the export's own: its package's src/ is built"):
        verify_export(added)


def test_the_package_folder_given_for_its_export_names_the_export(pkg_all):
    """`cd OUT/package` and `bpd firmware build .` (or its src/, or the folder from an example's): the package is not
    an export, and the message said to run `bpd export` to make one, for an export that is there. Now it names the
    export to give; a folder of no export is told as before."""
    export = pkg_all.parent.resolve()
    for d in (pkg_all, pkg_all / "src", pkg_all / "examples", pkg_all / "examples" / ".."):
        with pytest.raises(BpdError, match=rf"^{re.escape(str(d))}: the package of the export {re.escape(str(export))} "
                                           rf"\(`bpd export --package`\), not an export; give the export directory, "
                                           rf"{re.escape(str(export))}$"):
            verify_export(d)
    p = run_bpd("firmware", "build", ".", check=False, cwd=pkg_all)
    assert p.returncode == 1 and p.stderr == (f"bpd: error: .: the package of the export {export} (`bpd export "
                                              f"--package`), not an export; give the export directory, {export}\n")
    above = pkg_all.parent.parent  # the folder the export is in
    with pytest.raises(BpdError, match=rf"^{re.escape(str(above))}: not an export directory \(no export.json\); run "):
        verify_export(above)


def test_a_named_export_prints_records_and_verifies_its_name(tiny_pipeline, tmp_path):
    """`bpd export --package arduino --package-name swing`: the printed lines name the library swing_policy and the
    placeholder web page its files hold; export_report.json records the name; the export verifies, and refuses an
    edited file of the package."""
    out = tmp_path / "exp"
    p = run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--kernel", "generic", "--package", "arduino",
                "--package-name", "swing", "--episodes", "0", "--parity-samples", "200")
    assert "package for arduino: package/ in the export (library swing_policy " in p.stdout
    assert p.stdout.rstrip().endswith("the library's web page is the placeholder https://example.com/swing_policy "
                                      "(library.json, library.properties): give --package-url before you publish it")
    assert "url=https://example.com/swing_policy\n" in (out / "package" / "library.properties").read_text()
    assert json.loads((out / "export_report.json").read_text())["package"]["name"] == "swing_policy"
    assert "package/src/swing_policy.h" in verify_export(out)["files"]
    header = out / "package" / "src" / "swing_policy.h"
    header.write_text(header.read_text() + "\n")
    with pytest.raises(BpdError, match="package/src/swing_policy.h: changed after export"):
        verify_export(out)


def test_export_package_example_runs_on_an_emulated_cortex_m4f(real_export, tmp_path):
    """The CMake example of a real export's package, built for Cortex-M4F with the shipped kernel, computes
    what the host build computes (the integer kernel bit for bit)."""
    need_arm("cmake")
    out, _ = real_export
    info = json.loads((out / "export.json").read_text())
    app = out / "package" / "examples" / "cmake"
    _cmake_build(app, tmp_path / "b", app / "cortex-m4f.cmake")
    assert_cortex_m4f_image(tmp_path / "b" / "bpd_policy_example", info["model_hash"])
    _emulated_matches_host(tmp_path / "b" / "bpd_policy_example", out, 0.0 if info["kernel"] == "integer" else 1e-5)


def test_two_packages_of_one_kernel_link_with_lto_for_cortex_m0_and_m4f(real_export, tmp_path):
    """Two packages (bpd, swing) of the same straight-line kernel link into one image with -flto, where every
    unit's top-level assembly is one assembly file: for Cortex-M0 the integer kernel's Thumb-1 assembly, whose
    local labels (.Lswing_t1_net_bad0) take the name too, and for Cortex-M4F the SMLAD and compact assembly."""
    need_arm()
    out, _ = real_export
    for name in ("bpd", "swing"):
        d = tmp_path / name
        shutil.copytree(out, d, ignore=shutil.ignore_patterns("build", "package"))
        meta = _meta(d) | {"name": name}
        write_package(d, "cmake", meta, np.zeros(meta["obs_dim"]))
    swing = {p.name: LEFT.findall(p.read_text()) for p in (tmp_path / "swing" / "package").rglob("*") if p.is_file()}
    assert not any(swing.values()), {k: v for k, v in swing.items() if v}  # no bpd name left, this kernel's either
    main = tmp_path / "main.c"
    main.write_text("#include \"bpd_policy.h\"\n#include \"swing_policy.h\"\n"
                    "static float s1[BPD_SCRATCH_FLOATS], s2[SWING_SCRATCH_FLOATS];\n"
                    "static float obs[BPD_OBS_DIM], a[BPD_ACT_DIM], b[SWING_ACT_DIM];\n"
                    "int (*volatile run_bpd)(const bpd_model_t *, const float *, float *, float *) = bpd_policy_run;\n"
                    "int (*volatile run_swing)(const swing_model_t *, const float *, float *, float *) = "
                    "swing_policy_run;\n"  # called through a pointer: -flto keeps both whole
                    "int main(void)\n{\n    return run_bpd(&bpd_model, obs, a, s1) + "
                    "run_swing(&swing_model, obs, b, s2);\n}\n")
    for cpu in (("-mcpu=cortex-m0", "-mthumb"), CORTEX_M4F):
        objs = []
        for i, src in enumerate([*(tmp_path / n / "package" / "src" / f for n in ("bpd", "swing") for f in SOURCES),
                                 main]):
            objs.append(str(tmp_path / f"{cpu[0][6:]}-{i}.o"))
            inc = [f"-I{tmp_path / n / 'package' / 'src'}" for n in ("bpd", "swing")]
            _run([ARM_GCC, *STRICT, *cpu, "-O2", "-flto", *inc, "-c", str(src), "-o", objs[-1]])
        elf = tmp_path / f"{cpu[0][6:]}.elf"
        _run([ARM_GCC, *cpu, "-O2", "-flto", *LINK, *objs, "-lm", "-o", str(elf)])
        defined = {line.split()[-1] for line in _run(["arm-none-eabi-nm", str(elf)]).splitlines()}
        assert {"bpd_policy_run", "swing_policy_run", "bpd_model", "swing_model"} <= defined, cpu


def test_a_package_asks_for_libm_only_where_its_kernel_calls_it(real_export):
    """The float kernels' C calls tanhf and fmaf: the package links libm and selects Zephyr's full libc; the
    integer kernel's calls neither, and its package asks for none of it. None of these straight-line kernels reads
    BPD_FAST_TANH (each compiles in the tanh the export chose): no package offers an option that would change
    nothing."""
    out, _ = real_export
    kind = json.loads((out / "export.json").read_text())["kernel"]
    src = (out / "package" / "src" / "policy.c").read_text()
    calls = any(f in src for f in ("tanhf", "fmaf"))
    assert calls == (kind != "integer") and "BPD_FAST_TANH" not in src
    cmake = (out / "package" / "CMakeLists.txt").read_text()
    kconfig = (out / "package" / "zephyr" / "Kconfig").read_text()
    zephyr = (out / "package" / "zephyr" / "CMakeLists.txt").read_text()
    pio = json.loads((out / "package" / "library.json").read_text())["build"]
    for text in ("target_link_libraries(bpd_policy PUBLIC m)" in cmake, "select REQUIRES_FULL_LIBC" in kconfig,
                 pio.get("flags") == "-lm"):  # PlatformIO: a build flag -l is linked into the project
        assert text == calls, kind
    # every kernel's figures are the FPU's, which Zephyr leaves off: the float kernels' arithmetic, the integer
    # kernel's VCVT at its inputs and outputs (without it, the bits stage: BPD_INT_FP=0)
    assert "imply FPU" in kconfig and "CONFIG_FPU_SHARING" in kconfig, kind
    assert not any("FAST_TANH" in t for t in (cmake, kconfig, zephyr)), kind


def test_the_generic_kernels_package_offers_its_rational_tanh(pkg_all):
    """The generic kernel (policy.h: -DBPD_FAST_TANH) is the one whose tanh the option changes: offered in CMake and
    Kconfig, and passed to the compiler by each."""
    assert "BPD_FAST_TANH" in (pkg_all / "src" / "policy.c").read_text()
    cmake = (pkg_all / "CMakeLists.txt").read_text()
    assert 'option(BPD_POLICY_FAST_TANH "rational tanh' in cmake
    assert "target_compile_definitions(bpd_policy PRIVATE BPD_FAST_TANH)" in cmake
    assert "config BPD_POLICY_FAST_TANH" in (pkg_all / "zephyr" / "Kconfig").read_text()
    assert "zephyr_library_compile_definitions(BPD_FAST_TANH)" in (pkg_all / "zephyr" / "CMakeLists.txt").read_text()
