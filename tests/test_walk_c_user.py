"""The exported C as a firmware engineer integrates it: every kernel form built with a project's stricter warnings
(export/cc.py INTEGRATION) on the host and each Cortex-M part at every usual optimisation level."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from export.c_export import generate_c
from export.cc import INTEGRATION
from export.codegen import generate_kernel, tanh_form
from export.compact import generate_compact
from export.fixed_point import generate_int_kernel
from export.int_plan import generate_int_table_kernel
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
    -O2 and -Os: no warning from any form (the M4F integer kernel's SSAT once gave an unsigned int to an int32_t)."""
    cc = COMPILERS[target]
    if shutil.which(cc[0]) is None:
        pytest.skip(f"{cc[0]} not installed")
    failed = []
    for form in _every_form(tmp_path):
        for opt in ("-O0", "-O2", "-Os"):
            p = subprocess.run([*cc, *INTEGRATION, opt, "-c", "policy.c", "policy_weights.c"], cwd=tmp_path / form,
                               capture_output=True, text=True)
            if p.returncode != 0 or p.stderr:
                failed.append(f"{form} {opt}: {p.stderr.strip().splitlines()[:1]}")
    assert failed == []
