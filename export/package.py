"""`bpd export --package`: the export as a library for the user's build system.

`--package cmake|zephyr|platformio|arduino|all` writes OUT/package/, one folder laid out so that each
ecosystem asked for finds what it expects (`all` is one folder that is all four):

  src/                   the export's C (export.kernels.KERNEL_FILES) and bpd_policy.h, the one header
                         to include (Arduino wants the sources under src/; every format builds them there)
  CMakeLists.txt         cmake: a static library `bpd_policy`, its alias `bpd::policy` for
  cmake/bpd_policyConfig.cmake  add_subdirectory, and an install rule exporting `bpd::policy` to find_package
  zephyr/module.yml      zephyr: the module (build.cmake, build.kconfig), its Kconfig (CONFIG_BPD_POLICY)
  zephyr/Kconfig         and CMakeLists.txt (a zephyr_library of src/)
  zephyr/CMakeLists.txt  (its example a sample: examples/zephyr/sample.yaml, what twister builds and runs)
  library.json           platformio: the library manifest (sources and headers in src/; -lm for a float kernel)
  library.properties     arduino: the library metadata
  examples/              one example per format, each running bpd_policy_run on one observation (the
                         dataset's mean where the network has one) and printing the action

Every file goes into export.json's file record, so the export verifies with its package in it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

import bpd
from bpd.errors import BpdError
from bpd.io import write_text
from export.c_export import c_float
from export.kernels import KERNEL_FILES

FORMATS = ("cmake", "zephyr", "platformio", "arduino")
CHOICES = ("none", *FORMATS, "all")
DIR = "package"
NAME = "bpd_policy"  # the CMake project, Zephyr module and Arduino library
PIO_NAME = "bpd-policy"  # PlatformIO names are slugs (letters, digits, dashes)
HEADER = "bpd_policy.h"
SOURCES = tuple(f for f in KERNEL_FILES if f.endswith(".c"))
ARDUINO_SKETCH = "bpd_policy_run"
PLACEHOLDER_URL = "https://example.com/bpd_policy"
# the compiler flags of Cortex-M4F, the core the examples are built for in tests/test_package.py
CORTEX_M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")


NAME_RULE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)?")  # a C prefix, lower case: NAME_, NAME_ upper too
NAME_MAX = 32  # NAME_policy within every manifest's limit (PlatformIO's 50 characters)


def check_name(name: str) -> None:
    """--package-name: a short lower-case C identifier (its upper case prefixes the macros)."""
    if not NAME_RULE.fullmatch(name) or len(name) > NAME_MAX:
        raise BpdError(f"--package-name {name[:40]!r}: a lower-case C name, a letter then letters or digits (at most "
                       f"one underscore, {NAME_MAX} characters), e.g. swing")


# --package-url: what PlatformIO takes as library.json's homepage (a URL with a scheme and a host of a domain, at
# most 255 characters) and library.properties' one-line url=: http(s), a host with a dot (or localhost), no spaces
URL_RULE = re.compile(r"https?://(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:[0-9]{1,5})?([/?#]\S*)?")
URL_MAX = 255


def check_url(url: str) -> None:
    """--package-url (empty: none, the placeholder): a web address both manifests accept."""
    if url and (not URL_RULE.fullmatch(url) or len(url) > URL_MAX):
        raise BpdError(f"--package-url {url[:60]!r}: a web address, http:// or https:// then a host name, no spaces, "
                       f"at most {URL_MAX} characters (e.g. https://github.com/you/swing): library.json's homepage "
                       "and library.properties' url")


# where a name starts: not inside a word, but after -D (a macro on the command line: -DBPD_INT_FP=0) and .L (an
# assembly-local label: top-level asm of two packages is one assembly file under -flto)
_START = r"(?:(?<![A-Za-z0-9])|(?<=-D)|(?<=\.L))"


def renamed(text: str, name: str, keep: tuple[str, ...] = ()) -> str:
    """The package's text with its C, CMake, Zephyr and PlatformIO names under name in place of bpd: bpd_x and
    BPD_X (also inside CONFIG_BPD_X, -DBPD_X and .Lbpd_x), the CMake namespace bpd:: (bpd::policy) and bpd-policy.
    `bpd export` and the like, no name, stay; so do the user's own words: the strings in keep (--package-url, the
    environment id) and the command a generated file says it was made by (its paths)."""
    if name == "bpd":
        return text
    words = sorted((re.escape(k) for k in keep if k), key=len, reverse=True)
    kept = re.compile("|".join([r"regenerate with: [^\n]*", *words]))
    parts, at = [], 0
    for m in kept.finditer(text):
        parts += [_renamed(text[at:m.start()], name), m.group()]
        at = m.end()
    return "".join([*parts, _renamed(text[at:], name)])


def _renamed(text: str, name: str) -> str:
    text = re.sub(_START + "bpd_", f"{name}_", text)
    text = re.sub(_START + "BPD_", f"{name.upper()}_", text)
    return re.sub(_START + "bpd(::|-policy)", lambda m: name.replace("_", "-") + m.group(1)
                  if m.group(1) == "-policy" else name + m.group(1), text)


def formats_of(choice: str) -> tuple[str, ...]:
    """The formats a --package value names (none: nothing); a bad value is one line."""
    if choice not in CHOICES:
        raise BpdError(f"--package {choice!r}: choose one of {', '.join(CHOICES)}")
    return () if choice == "none" else FORMATS if choice == "all" else (choice,)


def library_version() -> str:
    """The library's version: bpd's, where it is semver (every manifest here asks for one)."""
    v = bpd.__version__
    return v if re.fullmatch(r"\d+\.\d+\.\d+", v) else "0.0.0"


def write_package(export_dir: str | Path, choice: str, meta: dict, example_obs: np.ndarray,
                  example_action: np.ndarray | None = None) -> dict:
    """Write export_dir/package for the formats choice names, from the export's C files in export_dir.
    meta: env_id, obs_dim, act_dim, model_hash and kernel of the export (and url, the library's web page, or
    none). example_obs: the observation the
    examples run on; example_action: what the host build of the same C gave for it (noted in the examples).
    Returns the record of what was written ({} for none)."""
    fmts = formats_of(choice)
    if not fmts:
        return {}
    d = Path(export_dir)
    missing = [f for f in KERNEL_FILES if not (d / f).is_file()]
    if missing:
        raise BpdError(f"{d}: no {', '.join(missing)} to package; run `bpd export` again")
    obs = np.asarray(example_obs, np.float32).reshape(-1)
    if obs.shape != (int(meta["obs_dim"]),):
        raise BpdError(f"the example observation has {obs.size} values, the policy reads {meta['obs_dim']}")
    # the rational tanh is the generic kernel's (policy.h); the others compile the tanh they chose in
    meta = meta | {"fast_tanh": "BPD_FAST_TANH" in (d / "policy.c").read_text(errors="replace")}
    name = str(meta.get("name") or "bpd")
    check_name(name)
    check_url(str(meta.get("url") or ""))
    pkg = d / DIR
    if pkg.exists():
        shutil.rmtree(pkg)
    files: dict[str, str] = {f"src/{f}": (d / f).read_text() for f in KERNEL_FILES}
    files[f"src/{HEADER}"] = _header(meta)
    example = _example_c(meta, obs, example_action)
    for fmt in fmts:
        files |= GENERATORS[fmt](meta, example, obs, example_action)
    files["README.md"] = _readme(meta, fmts)
    users = (str(meta.get("url") or ""), str(meta["env_id"]))  # the user's words: not renamed
    for rel, text in files.items():  # under the package's name, paths and all (src/swing_policy.h)
        path = pkg / renamed(rel, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, renamed(text, name, users))
    return {"dir": DIR, "formats": list(fmts), "name": renamed(NAME, name), "version": library_version(),
            "example_observation": [float(x) for x in obs],
            "example_action_host": None if example_action is None else [float(x) for x in np.ravel(example_action)],
            "files": sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())}


def _count(n: object, what: str) -> str:
    return f"{n} {what}" + ("" if int(str(n)) == 1 else "s")


def _describe(meta: dict) -> str:
    return (f"Sparse policy for {meta['env_id']} exported by bpd ({_count(meta['obs_dim'], 'observation')} to "
            f"{_count(meta['act_dim'], 'action')}, {meta['kernel']} kernel, model {str(meta['model_hash'])[:16]})")


def _url(meta: dict) -> str:
    """The library's web page (library.properties requires one): --package-url, else a placeholder."""
    return str(meta.get("url") or PLACEHOLDER_URL)


def _header(meta: dict) -> str:
    return f"""/* {NAME}: the one header of the exported policy (generated by bpd export --package - do not edit).
 * {_describe(meta)}.
 *
 *   static float scratch[BPD_SCRATCH_FLOATS];
 *   float action[BPD_ACT_DIM];
 *   int rc = bpd_policy_run(&bpd_model, obs, action, scratch);  // obs: BPD_OBS_DIM floats
 *
 * rc is BPD_OK, or BPD_ERR_NONFINITE with the model's safe action written for a NaN or infinite
 * observation (policy.h). No malloc; every buffer is the caller's.
 */
#ifndef BPD_POLICY_PACKAGE_H
#define BPD_POLICY_PACKAGE_H
#ifdef __cplusplus
extern "C" {{
#endif
#include "policy.h"
#include "policy_weights.h"
#ifdef __cplusplus
}}
#endif
#endif
"""


def _obs_literal(obs: np.ndarray) -> str:
    return ", ".join(c_float(float(x)) for x in obs)


def _expected(action: np.ndarray | None) -> str:
    if action is None:
        return ""
    return (" * On the host the same C gives action = {" + ", ".join(f"{float(a):.6g}" for a in np.ravel(action))
            + "} for it.\n")


def _example_c(meta: dict, obs: np.ndarray, action: np.ndarray | None) -> str:
    """The C example every C format shares: one observation in, the action printed (in thousandths, so that
    no printf float support is needed)."""
    return f"""/* {NAME} example: one observation in, one action out (generated by bpd export --package).
 * The observation is one of {meta['env_id']} (the dataset's mean where the export has it): put the
 * sensor readings of your plant in its place.
{_expected(action)} */
#include <stdio.h>

#include "{HEADER}"

static const float obs[BPD_OBS_DIM] = {{ {_obs_literal(obs)} }};
static float scratch[BPD_SCRATCH_FLOATS]; /* the kernel's working memory, owned by the caller */

int policy_step(const float *observation, float *action);

/* One control step: BPD_OBS_DIM observations in, BPD_ACT_DIM actions out. */
int policy_step(const float *observation, float *action)
{{
    return bpd_policy_run(&bpd_model, observation, action, scratch);
}}

int main(void)
{{
    float action[BPD_ACT_DIM];
    int i;
    int rc = policy_step(obs, action);

    printf("bpd_policy_run: rc %d (model %.16s)\\n", rc, bpd_model_hash);
    for (i = 0; i < BPD_ACT_DIM; ++i) {{
        printf("action[%d] = %ld/1000\\n", i, (long)(action[i] * 1000.0f));
    }}
    return rc == BPD_OK ? 0 : 1;
}}
"""


# ------------------------------------------------------------------ cmake

def _cmake(meta: dict, example: str, obs: np.ndarray, action: np.ndarray | None) -> dict[str, str]:
    srcs = " ".join(f"src/{f}" for f in SOURCES)
    headers = " ".join(f"src/{f}" for f in (HEADER, *KERNEL_FILES) if f.endswith(".h"))
    floats, fast = _uses_libm(meta), _offers_fast_tanh(meta)
    fast_note = " -DBPD_POLICY_FAST_TANH=ON: the rational tanh of policy.h in place of libm's tanhf." if fast else ""
    fast_option = ('option(BPD_POLICY_FAST_TANH "rational tanh (max abs error 3.9e-7) in place of libm tanhf" OFF)\n'
                   if fast else "")
    float_link = ((f"if(BPD_POLICY_FAST_TANH)\n  target_compile_definitions({NAME} PRIVATE BPD_FAST_TANH)\nendif()\n"
                   if fast else "")
                  + (f"if(NOT MSVC)\n  target_link_libraries({NAME} PUBLIC m)  # tanhf, fmaf\nendif()\n"
                     if floats else ""))
    lib = f"""# {NAME}: {_describe(meta)}.
# Generated by bpd export --package - do not edit.
#
# In your build, either
#   add_subdirectory(path/to/this/folder)       then  target_link_libraries(app PRIVATE bpd::policy)
# or install it (cmake --install) and
#   find_package({NAME} CONFIG REQUIRED)          then  target_link_libraries(app PRIVATE bpd::policy)
# Include "{HEADER}".{fast_note}
cmake_minimum_required(VERSION 3.13)
project({NAME} VERSION {library_version()} LANGUAGES C)

include(GNUInstallDirs)
{fast_option}
add_library({NAME} STATIC {srcs})
add_library(bpd::policy ALIAS {NAME})
set_target_properties({NAME} PROPERTIES EXPORT_NAME policy C_STANDARD 99 C_STANDARD_REQUIRED ON
                      C_EXTENSIONS OFF)
target_include_directories({NAME} PUBLIC
    $<BUILD_INTERFACE:${{CMAKE_CURRENT_SOURCE_DIR}}/src>
    $<INSTALL_INTERFACE:${{CMAKE_INSTALL_INCLUDEDIR}}/{NAME}>)
{float_link}
install(TARGETS {NAME} EXPORT {NAME}Targets ARCHIVE DESTINATION ${{CMAKE_INSTALL_LIBDIR}})
install(FILES {headers} DESTINATION ${{CMAKE_INSTALL_INCLUDEDIR}}/{NAME})
install(EXPORT {NAME}Targets NAMESPACE bpd:: DESTINATION ${{CMAKE_INSTALL_LIBDIR}}/cmake/{NAME})
include(CMakePackageConfigHelpers)  # find_package({NAME} {library_version()} CONFIG): the version file answers
write_basic_package_version_file(${{CMAKE_CURRENT_BINARY_DIR}}/{NAME}ConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES cmake/{NAME}Config.cmake ${{CMAKE_CURRENT_BINARY_DIR}}/{NAME}ConfigVersion.cmake
        DESTINATION ${{CMAKE_INSTALL_LIBDIR}}/cmake/{NAME})
"""
    config = f"""# find_package({NAME}): the installed library (imported target bpd::policy) and the model it runs.
include("${{CMAKE_CURRENT_LIST_DIR}}/{NAME}Targets.cmake")
set({NAME}_MODEL_HASH "{meta['model_hash']}")
"""
    app = f"""# {NAME} example for CMake: the policy on one observation.
# Cross-compiled for Cortex-M4F with the toolchain file beside it:
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=cortex-m4f.cmake && cmake --build build
# It takes an installed {NAME} (find_package; set CMAKE_PREFIX_PATH) where that is this package's model, and else
# this package's own folder (every export's library has bpd's version: the model hash tells them apart).
cmake_minimum_required(VERSION 3.13)
project({NAME}_example LANGUAGES C)

find_package({NAME} CONFIG QUIET)
if({NAME}_FOUND AND NOT "${{{NAME}_MODEL_HASH}}" STREQUAL "{meta['model_hash']}")
  message(STATUS "{NAME} installed at ${{{NAME}_DIR}} runs model ${{{NAME}_MODEL_HASH}}, not this package's: "
                 "building this package's own folder")
  set({NAME}_FOUND FALSE)
endif()
if({NAME}_FOUND)
  set(policy_library bpd::policy)
else()
  add_subdirectory(${{CMAKE_CURRENT_SOURCE_DIR}}/../.. {NAME})
  set(policy_library {NAME})  # the folder's own library: here bpd::policy may still be the installed one
endif()

add_executable({NAME}_example main.c)
set_target_properties({NAME}_example PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_link_libraries({NAME}_example PRIVATE ${{policy_library}})
"""
    flags = " ".join(CORTEX_M4F)
    toolchain = f"""# Cortex-M4F with the GNU Arm Embedded toolchain (arm-none-eabi-gcc and newlib): bare metal, the
# system calls stubbed by newlib's nosys (printf goes nowhere until you retarget _write).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "{flags}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nosys.specs")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
"""
    return {"CMakeLists.txt": lib, f"cmake/{NAME}Config.cmake": config, "examples/cmake/CMakeLists.txt": app,
            "examples/cmake/main.c": example, "examples/cmake/cortex-m4f.cmake": toolchain}


# ------------------------------------------------------------------ zephyr

def _uses_libm(meta: dict) -> bool:
    """Whether the export's C calls libm (the float kernels' tanhf and fmaf; the integer kernel's calls nothing)."""
    return meta.get("kernel") != "integer"


def _offers_fast_tanh(meta: dict) -> bool:
    """Whether BPD_FAST_TANH changes the kernel (the generic kernel's tanh; the compact and generated kernels
    compile in the tanh the export chose, the integer kernel has its own): only then is it an option."""
    return bool(meta.get("fast_tanh", _uses_libm(meta)))


def _zephyr(meta: dict, example: str, obs: np.ndarray, action: np.ndarray | None) -> dict[str, str]:
    floats = _uses_libm(meta)  # the integer kernel's C calls no libm: neither the full libc nor the fast tanh
    # every kernel's figures are the FPU's where the core has one: Zephyr builds soft float (CONFIG_FPU=n) unless
    # told, which runs a float kernel's every multiply-add in library calls and gives the integer kernel its
    # observations' bits stage in place of VCVT (BPD_INT_FP=0, more instructions an observation than its figures);
    # imply turns the FPU on where the core has one (nothing elsewhere), and the user may still say n
    libc = ("\tselect REQUIRES_FULL_LIBC\n" if floats else "") + "\timply FPU\n"
    fpu = "\t  Its cycles are the FPU's (implied here; threads that share it need CONFIG_FPU_SHARING).\n"
    fast_cmake = ("  if(CONFIG_BPD_POLICY_FAST_TANH)\n    zephyr_library_compile_definitions(BPD_FAST_TANH)\n"
                  "  endif()\n" if _offers_fast_tanh(meta) else "")
    fast = ("\nconfig BPD_POLICY_FAST_TANH\n\tbool \"Rational tanh in place of libm tanhf\"\n\tdepends on BPD_POLICY\n"
            "\thelp\n\t  The generic kernel's rational tanh (max abs error 3.9e-7) instead of the C library's tanhf.\n"
            if _offers_fast_tanh(meta) else "")
    module = f"""# {NAME}: a Zephyr module (generated by bpd export --package - do not edit).
# Add this folder to ZEPHYR_EXTRA_MODULES (or its repository to your west.yml), then CONFIG_BPD_POLICY=y.
name: {NAME}
build:
  cmake: zephyr
  kconfig: zephyr/Kconfig
samples:
  - examples/zephyr
"""
    kconfig = f"""# {NAME} (generated by bpd export --package - do not edit)

config BPD_POLICY
\tbool "bpd policy for {meta['env_id']}"
{libc}\thelp
\t  {_describe(meta)}.
\t  Include {HEADER} and call bpd_policy_run(&bpd_model, obs, action, scratch).
{fpu}{fast}"""
    srcs = "\n".join(f"    ${{ZEPHYR_CURRENT_MODULE_DIR}}/src/{f}" for f in SOURCES)
    cmake = f"""# {NAME} (generated by bpd export --package - do not edit)
if(CONFIG_BPD_POLICY)
  zephyr_library_named({NAME})
  zephyr_library_sources(
{srcs}
  )
  zephyr_include_directories(${{ZEPHYR_CURRENT_MODULE_DIR}}/src)
{fast_cmake}endif()
"""
    app = f"""# {NAME} example for Zephyr: the policy on one observation.
#   west build -b <your Cortex-M4F board, e.g. nucleo_f401re> examples/zephyr
cmake_minimum_required(VERSION 3.20.0)
# the package this example sits in is the module; an application adds its folder the same way
list(APPEND ZEPHYR_EXTRA_MODULES ${{CMAKE_CURRENT_SOURCE_DIR}}/../..)
find_package(Zephyr REQUIRED HINTS $ENV{{ZEPHYR_BASE}})
project({NAME}_example)

target_sources(app PRIVATE src/main.c)
"""
    # what twister builds and runs of the sample: the example's first line, the model's hash in it, on the console;
    # QEMU's Cortex-M3 (no FPU, no DSP: the kernels' C forms) runs it with no board
    sample = f"""# {NAME} example for Zephyr: what twister builds and runs (generated by bpd export --package - do not
# edit).
#   west twister -T examples/zephyr -p qemu_cortex_m3
sample:
  name: {NAME} example
  description: {json.dumps(f"The exported policy for {meta['env_id']} on one observation, its action printed")}
tests:
  sample.{NAME}.run:
    tags: bpd policy
    integration_platforms:
      - qemu_cortex_m3
    harness: console
    harness_config:
      type: one_line
      regex:
        - "bpd_policy_run: rc 0 \\\\(model {str(meta['model_hash'])[:16]}\\\\)"
"""
    return {"zephyr/module.yml": module, "zephyr/Kconfig": kconfig, "zephyr/CMakeLists.txt": cmake,
            "examples/zephyr/CMakeLists.txt": app, "examples/zephyr/prj.conf": "CONFIG_BPD_POLICY=y\n",
            "examples/zephyr/sample.yaml": sample, "examples/zephyr/src/main.c": example}


# ------------------------------------------------------------------ platformio

def _platformio(meta: dict, example: str, obs: np.ndarray, action: np.ndarray | None) -> dict[str, str]:
    manifest = {
        "name": PIO_NAME, "version": library_version(), "description": _describe(meta),
        "keywords": ["policy", "control", "neural-network", "reinforcement-learning", "cortex-m"],
        "frameworks": "*", "platforms": "*", "headers": [HEADER],
        # -lm: the float kernels' tanhf and fmaf (a platform that links no libm of its own, as native does not)
        "build": {"srcDir": "src", "includeDir": "src"} | ({"flags": "-lm"} if _uses_libm(meta) else {}),
        "examples": [{"name": "bpd_policy_run", "base": "examples/platformio",
                      "files": ["platformio.ini", "src/main.c"]}],
        "homepage": _url(meta),
    }
    ini = f"""; {NAME} example for PlatformIO: the policy on one observation, on a Cortex-M4F board.
;   pio run -d examples/platformio
[env:cortex_m4f]
platform = ststm32
board = nucleo_f401re
framework = stm32cube
; the package this example sits in is the library; a real project names it in lib_deps the same way
lib_deps = {PIO_NAME}=symlink://../..
"""
    return {"library.json": json.dumps(manifest, indent=2) + "\n", "examples/platformio/platformio.ini": ini,
            "examples/platformio/src/main.c": example}


# ------------------------------------------------------------------ arduino

def _arduino(meta: dict, example: str, obs: np.ndarray, action: np.ndarray | None) -> dict[str, str]:
    paragraph = (f"bpd_policy_run(&bpd_model, obs, action, scratch) maps {_count(meta['obs_dim'], 'observation')} "
                 f"to {_count(meta['act_dim'], 'action')} ({meta['kernel']} kernel, model "
                 f"{str(meta['model_hash'])[:16]}); "
                 "no malloc, a safe action for NaN or infinite inputs.")
    props = f"""name={NAME}
version={library_version()}
author=bpd export
maintainer=bpd export
sentence=Sparse neural-network policy for {meta['env_id']}, exported by bpd.
paragraph={paragraph}
category=Data Processing
url={_url(meta)}
architectures=*
includes={HEADER}
"""
    sketch = f"""// {NAME} example for Arduino: the policy on one observation, printed on Serial once a second.
// The observation is one of {meta['env_id']} (the dataset's mean where the export has it): put the
// sensor readings of your plant in its place.
{"// On the host the same C gives action = {" + ", ".join(f"{float(a):.6g}" for a in np.ravel(action)) + "}."
 if action is not None else ""}
#include <{HEADER}>

static const float obs[BPD_OBS_DIM] = {{ {_obs_literal(obs)} }};
static float scratch[BPD_SCRATCH_FLOATS];  // the kernel's working memory, owned by the caller

void setup() {{
  Serial.begin(115200);
}}

void loop() {{
  float action[BPD_ACT_DIM];
  int rc = bpd_policy_run(&bpd_model, obs, action, scratch);
  Serial.print("bpd_policy_run: rc ");
  Serial.println(rc);
  for (int i = 0; i < BPD_ACT_DIM; ++i) {{
    Serial.print("action ");
    Serial.println(action[i], 6);
  }}
  delay(1000);
}}
"""
    return {"library.properties": props,
            f"examples/{ARDUINO_SKETCH}/{ARDUINO_SKETCH}.ino": sketch}


GENERATORS = {"cmake": _cmake, "zephyr": _zephyr, "platformio": _platformio, "arduino": _arduino}

_USE = {
    "cmake": f"`add_subdirectory(package)` (or `cmake --install` it and `find_package({NAME} CONFIG)`), then "
             "`target_link_libraries(app PRIVATE bpd::policy)`; example: examples/cmake (with a Cortex-M4F "
             "toolchain file).",
    "zephyr": "a Zephyr module (zephyr/module.yml): add the folder to ZEPHYR_EXTRA_MODULES (or its repository to "
              "west.yml) and set CONFIG_BPD_POLICY=y; example: examples/zephyr (`west build -b BOARD examples/zephyr`;"
              " its sample.yaml runs it under twister: `west twister -T examples/zephyr -p qemu_cortex_m3`).",
    "platformio": f"a PlatformIO library (library.json): `lib_deps = {PIO_NAME}=symlink://path/to/package` or "
                  "copy the folder into lib/; example: examples/platformio.",
    "arduino": f"an Arduino library (library.properties, sources in src/): copy the folder into your sketchbook's "
               f"libraries/ (or Sketch > Include Library > Add .ZIP Library); example: examples/{ARDUINO_SKETCH}.",
}


def _readme(meta: dict, fmts: tuple[str, ...]) -> str:
    lines = [f"# {NAME}", "", _describe(meta) + ".", "",
             f"Include `{HEADER}` and call `bpd_policy_run(&bpd_model, obs, action, scratch)` with "
             "`float scratch[BPD_SCRATCH_FLOATS]` of your own (src/policy.h has the API). Include only "
             f"`{HEADER}`: its parts (`policy.h`, `policy_weights.h`, `policy_config.h`) have these names in every "
             "package, so beside another (`bpd export --package-name`) an `#include \"policy.h\"` of yours finds "
             f"whichever package comes first on the include path, where `{HEADER}` always finds its own. Generated by "
             "`bpd export --package`: the files are part of the export's record, so edit a copy, not these.", ""]
    lines += [f"- **{f}**: {_USE[f]}" for f in fmts]
    return "\n".join(lines) + "\n"
