"""The exported C as a firmware engineer integrates it: every kernel form built with a project's stricter warnings
(export/cc.py INTEGRATION) on the host and each Cortex-M part at every usual optimisation level, and two exports
linked into one program by export/README.md's renaming."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from export.c_export import generate_c
from export.cc import INTEGRATION
from export.codegen import generate_kernel, tanh_form
from export.compact import generate_compact
from export.fixed_point import generate_int_kernel
from export.int_plan import generate_int_table_kernel
from tests.conftest import ROOT
from tests.test_codegen import hand_tanh_net

COMPILERS = {"gcc": ["gcc"], "clang": ["clang"],
             "cortex-m4f": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
             "cortex-m0plus": ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"]}


def _every_form(d):
    """hand_tanh_net (tanh output: the integer kernel's output stage by SSAT on Cortex-M4F) in every kernel form."""
    net, q = hand_tanh_net()
    generate_c(net, d / "generic", "dense", False, "0" * 64, "t")
    generate_compact(net, d / "compact", "0" * 64, "t", tanh_form("table-16"))
    generate_kernel(net, d / "generated", "0" * 64, "t", tanh_form("rational-5/4"))
    generate_int_kernel(net, q, d / "integer", "0" * 64, "t")
    generate_int_kernel(net, q, d / "integer-interp", "0" * 64, "t", lookup=False)
    generate_int_table_kernel(net, q, d / "integer-table", "0" * 64, "t", tables_only=True)
    return ["generic", "compact", "generated", "integer", "integer-interp", "integer-table"]


@pytest.mark.parametrize("target", list(COMPILERS))
def test_every_kernel_form_compiles_under_a_projects_stricter_warnings(tmp_path, target):
    """-Wconversion, -Wsign-conversion, -Wshadow, -Wcast-qual and -Wstrict-prototypes on top of STRICT, at -O0,
    -O2 and -Os: no warning from any form (the M4F integer kernel's SSAT once gave an unsigned int to an int32_t).
    Also in the GNU dialects Arduino and PlatformIO build C in (gnu11) and GCC's default (gnu17), where the C library
    declares more names: the generic kernel's own finite() once clashed with newlib's and glibc's."""
    cc = COMPILERS[target]
    if shutil.which(cc[0]) is None:
        pytest.skip(f"{cc[0]} not installed")
    failed = []
    builds = [(INTEGRATION, opt) for opt in ("-O0", "-O2", "-Os")]
    builds += [([f if f != "-std=c99" else std for f in INTEGRATION], "-O2") for std in ("-std=gnu11", "-std=gnu17")]
    for form in _every_form(tmp_path):
        for flags, opt in builds:
            p = subprocess.run([*cc, *flags, opt, "-c", "policy.c", "policy_weights.c"], cwd=tmp_path / form,
                               capture_output=True, text=True)
            if p.returncode != 0 or p.stderr:
                failed.append(f"{form} {flags[0]} {opt}: {p.stderr.strip().splitlines()[:1]}")
    assert failed == []


TWO = r"""#include <stdio.h>
#include "policy_weights.h"
extern const bpd_model_t swing_model;
int swing_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch);
int main(void)
{
    const float a_obs[2] = {0.5f, 0.25f}, b_obs[3] = {0.5f, 0.25f, 0.75f};
    float a[1], b[1], scratch[16];
    int ra = bpd_policy_run(&bpd_model, a_obs, a, scratch);
    int rb = swing_policy_run(&swing_model, b_obs, b, scratch);
    printf("%d %.9g %d %.9g\n", ra, (double)a[0], rb, (double)b[0]);
    return 0;
}
"""


def test_two_exports_link_into_one_image_once_one_is_renamed_as_the_readme_says(tmp_path):
    """A balance export (hand_tanh_net, the generic kernel) and a swing-up one (a 3 -> 2 -> 1 ReLU/clip network,
    the integer kernel, whose action on [0.5, 0.25, 0.75] is 1.3125 exactly): linked as they come they collide on
    bpd_policy_run; with the swing-up objects' names renamed by export/README.md's nm/objcopy lines, one program
    runs both, each with its own weights (the balance action the host build's, bit for bit)."""
    from export.c_export import CPolicy
    from export.collapse import CollapsedNet
    from export.fixed_point import quantise

    for tool in ("gcc", "nm", "objcopy"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    net, _ = hand_tanh_net()
    generate_c(net, tmp_path / "balance", "dense", False, "0" * 64, "t")
    relu = CollapsedNet([np.array([[0.5, -0.25, 1.0], [0.0, 2.0, -1.0]], np.float32),
                         np.array([[1.0, -0.5]], np.float32)],
                        [np.array([0.125, -0.5], np.float32), np.array([0.25], np.float32)], "relu", "clip",
                        np.array([-4.0], np.float32), np.array([4.0], np.float32), [3, 2, 1])
    generate_int_kernel(relu, quantise(relu, np.array([[1.0] * 3, [-1.0] * 3], np.float32), "hand"),
                        tmp_path / "swing", "0" * 64, "t")
    (tmp_path / "main.c").write_text(TWO)

    def sh(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True)

    cflags = " ".join([*INTEGRATION, "-O2"])
    for name in ("balance", "swing"):
        assert sh(f"gcc {cflags} -I {name} -c {name}/policy.c -o {name}_policy.o && "
                  f"gcc {cflags} -I {name} -c {name}/policy_weights.c -o {name}_weights.o").returncode == 0
    link = "gcc main.o balance_policy.o balance_weights.o swing_policy.o swing_weights.o -lm -o two"
    assert sh(f"gcc {cflags} -I balance -c main.c -o main.o").returncode == 0
    clash = sh(link)
    assert clash.returncode != 0 and "multiple definition of `bpd_policy_run'" in clash.stderr
    readme = (ROOT / "export" / "README.md").read_text().split("## Two exports in one image")[1]
    recipe = readme.split("```sh\n")[1].split("```")[0].splitlines()
    assert sh(recipe[1]).returncode == 0 and sh(recipe[2]).returncode == 0  # the rename, word for word
    assert "bpd_policy_run swing_policy_run" in (tmp_path / "swing.syms").read_text()
    assert sh(link).returncode == 0
    ra, a, rb, b = sh("./two").stdout.split()
    want = CPolicy(tmp_path / "balance").act(np.array([[0.5, 0.25]], np.float32))[0, 0]
    assert (ra, rb) == ("0", "0") and np.float32(a) == want and np.float32(b) == np.float32(1.3125)


@pytest.mark.parametrize("target", ["gcc", "cortex-m4f", "cortex-m0plus"])
def test_no_form_has_mutable_state_and_the_model_is_read_only(tmp_path, target):
    """policy.h promises no static or global mutable state (two contexts may call at once) and const data in flash:
    no form's objects have a symbol in .data or .bss, and bpd_model and bpd_model_hash are read-only (R; on the host
    without position-independent code, where the model's pointers would be relocated at load)."""
    cc = COMPILERS[target] + (["-fno-pie"] if target == "gcc" else [])
    nm = "nm" if target == "gcc" else "arm-none-eabi-nm"
    if shutil.which(cc[0]) is None or shutil.which(nm) is None:
        pytest.skip(f"{cc[0]} or {nm} not installed")
    kinds = {}
    for form in _every_form(tmp_path):
        d = tmp_path / form
        subprocess.run([*cc, *INTEGRATION, "-O2", "-c", "policy.c", "policy_weights.c"], cwd=d, check=True)
        out = subprocess.run([nm, "policy.o", "policy_weights.o"], cwd=d, capture_output=True, text=True).stdout
        syms = [ln.split() for ln in out.splitlines() if len(ln.split()) == 3]
        kinds[form] = ({s for _, t, s in syms if t in "dDbBcC"},
                       {s: t for _, t, s in syms if s.startswith("bpd_model")})
    assert {f: v[0] for f, v in kinds.items()} == {f: set() for f in kinds}
    assert {f: v[1] for f, v in kinds.items()} == {f: {"bpd_model": "R", "bpd_model_hash": "R"} for f in kinds}
