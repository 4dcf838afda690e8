"""bpd/cache.py: builds and emulated measurements kept by the content of their inputs."""

import shutil

import numpy as np
import pytest

from bpd.cache import Key, cache_dir
from export.c_export import CPolicy, generate_c
from tests.test_export_c import random_net


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BPD_CACHE_DIR", "off")
    assert cache_dir("emulate") is None
    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path))
    assert cache_dir("emulate") == tmp_path / "emulate"
    monkeypatch.delenv("BPD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("host-lib") == tmp_path / "xdg" / "bpd" / "host-lib"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "file"))  # cannot be made: no cache, no error
    assert cache_dir("emulate") is None


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_a_key_sees_what_the_compiler_sees(tmp_path):
    """Comments do not change a key (a generated file names its directory in one); an included header, a flag
    or the code do."""
    from export.cc import find_cc

    cc = find_cc()
    (tmp_path / "h.h").write_text("#define N 3\n")
    src = tmp_path / "x.c"

    def key(flags=()):
        return Key("t").preprocessed(cc, [f"-I{tmp_path}", *flags], [src]).hexdigest()

    src.write_text('/* regenerate with: bpd export --out /a */\n#include "h.h"\nint x[N];\n')
    first = key()
    src.write_text('/* regenerate with: bpd export --out /b */\n#include "h.h"\nint x[N];\n')
    assert key() == first
    assert key(["-DM=1"]) != first
    (tmp_path / "h.h").write_text("#define N 4\n")
    assert key() != first
    (tmp_path / "h.h").write_text("#define N 3\n")
    src.write_text('#include "h.h"\nint y[N];\n')
    assert key() != first


def _export(d, comment: str):
    net = random_net(np.random.default_rng(3), [5, 8, 2], 0.6)
    generate_c(net, d, "dense", False, "0" * 64, comment)
    return d


def test_two_exports_of_one_network_share_one_host_library(monkeypatch, tmp_path):
    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "cache"))
    a = CPolicy(_export(tmp_path / "a", "bpd export --out a"))
    (lib,) = (tmp_path / "cache" / "host-lib").glob("libpolicy-*.so")
    before = lib.stat()
    b = CPolicy(_export(tmp_path / "b", "bpd export --out b"))
    assert list((tmp_path / "cache" / "host-lib").glob("libpolicy-*.so")) == [lib]
    after = lib.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # built once, for a
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_array_equal(a.act(x), b.act(x))
    monkeypatch.setenv("BPD_CACHE_DIR", "off")
    c = CPolicy(_export(tmp_path / "c", "bpd export --out c"))
    assert list((tmp_path / "c" / "build").glob("libpolicy-*.so"))  # off: the export's own build directory
    np.testing.assert_array_equal(c.act(x), a.act(x))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_an_emulated_measurement_is_made_once_and_read_back_the_same(monkeypatch, tmp_path):
    pytest.importorskip("unicorn")
    from firmware_host.measure.bench import BENCH, emulate_build

    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "cache"))
    obs = np.random.default_rng(1).normal(0, 0.3, (3, 5)).astype(np.float32)

    def measure(d, work, o=obs):
        return emulate_build("cortex-m4f", [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"],
                             [d, BENCH], work, o, 2, set(), ["policy", "policy_weights"])

    first = measure(_export(tmp_path / "a", "bpd export --out a"), tmp_path / "wa")
    again = measure(_export(tmp_path / "b", "bpd export --out b"), tmp_path / "wb")
    assert not (tmp_path / "wb").exists()  # read back: nothing built
    assert (tmp_path / "wa" / "bench.elf").is_file()
    np.testing.assert_array_equal(again["outputs"], first["outputs"])
    assert again["outputs"].dtype == np.float32 and again["outputs"].shape == (3, 2)
    assert {k: v for k, v in again.items() if k != "outputs"} == {k: v for k, v in first.items() if k != "outputs"}
    measure(tmp_path / "a", tmp_path / "wc", obs[:2])  # other inputs: measured
    assert (tmp_path / "wc" / "bench.elf").is_file()
    monkeypatch.setenv("BPD_CACHE_DIR", "off")
    off = measure(tmp_path / "a", tmp_path / "wd")
    assert (tmp_path / "wd" / "bench.elf").is_file() and off["instructions_median"] == first["instructions_median"]
    np.testing.assert_array_equal(off["outputs"], first["outputs"])


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_a_callgrind_count_is_read_back_and_the_timing_measured_again(monkeypatch, tmp_path):
    from firmware_host.measure.bench import BENCH, host_c

    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "cache"))

    def count(d, work):
        srcs = [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"]
        return host_c(srcs, [d, BENCH], work, 200, set())

    first = count(_export(tmp_path / "a", "bpd export --out a"), tmp_path / "w1")
    assert first["callgrind_instructions"] > 0
    (entry,) = (tmp_path / "cache" / "callgrind").glob("*.json")
    entry.write_text('{"callgrind_instructions": 12345.0}')  # what the cache holds is what comes back
    e = _export(tmp_path / "b", "bpd export --out b")
    again = count(e, tmp_path / "w2")
    assert again["callgrind_instructions"] == 12345.0 and again["median_ns"] > 0  # the timing: measured
    (e / "policy_weights.c").write_text((e / "policy_weights.c").read_text() + "\nint bpd_unused_extra;\n")
    assert count(e, tmp_path / "w3")["callgrind_instructions"] != 12345.0  # another program: counted


def test_an_entry_of_another_shape_is_measured_again_not_an_internal_error(monkeypatch, tmp_path):
    """A cache entry that is valid JSON but not the figures its reader takes (edited by hand, written by other code
    under the key, outputs of other sizes) is unreadable: measured again and replaced. It was an internal error
    (KeyError 'outputs', TypeError dict | list) in bpd bench."""
    pytest.importorskip("unicorn")
    from bpd.cache import load
    from firmware_host.measure.bench import BENCH, emulate_build

    (tmp_path / "e.json").write_text('{"a": 1.5, "b": null}')
    assert load(tmp_path / "e.json", {"a": (int, float)}) == {"a": 1.5, "b": None}
    for text in ("[]", '{"a": "1"}', '{"b": 2}', "3"):
        (tmp_path / "e.json").write_text(text)
        assert load(tmp_path / "e.json", {"a": (int, float)}) is None, text
    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "cache"))
    obs = np.random.default_rng(1).normal(0, 0.3, (3, 5)).astype(np.float32)
    d = _export(tmp_path / "a", "bpd export --out a")

    def measure(work):
        return emulate_build("cortex-m4f", [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"],
                             [d, BENCH], work, obs, 2, set(), ["policy", "policy_weights"])

    first = measure(tmp_path / "w0")
    (entry,) = (tmp_path / "cache" / "emulate").glob("*.json")
    whole = entry.read_text()
    for i, text in enumerate(("[]", "{}", '{"outputs": [1], "instructions_median": 1}',
                              whole.replace('"instructions_median"', '"instructions_mid"'))):
        entry.write_text(text)
        again = measure(tmp_path / f"w{i + 1}")
        assert (tmp_path / f"w{i + 1}" / "bench.elf").is_file(), text  # measured again
        assert again["instructions_median"] == first["instructions_median"] and again["outputs"].shape == (3, 2)
        assert entry.read_text() == whole  # and replaced
    import json
    short = json.loads(whole) | {"outputs": [[0.0, 0.0]]}  # outputs of one observation where three were measured
    entry.write_text(json.dumps(short))
    assert measure(tmp_path / "w9")["outputs"].shape == (3, 2) and (tmp_path / "w9" / "bench.elf").is_file()


def test_a_library_cut_short_in_the_cache_is_built_again(monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    cache = tmp_path / "cache"
    monkeypatch.setenv("BPD_CACHE_DIR", str(cache))
    a, b = _export(tmp_path / "a", "a"), _export(tmp_path / "b", "b")
    # built in another process (this one must not have loaded it: a loaded library is not read again)
    subprocess.run([sys.executable, "-c", "import sys; from export.c_export import CPolicy; CPolicy(sys.argv[1])",
                    str(a)], check=True, cwd=ROOT, env=dict(os.environ, BPD_CACHE_DIR=str(cache)))
    (lib,) = (cache / "host-lib").glob("libpolicy-*.so")
    lib.write_bytes(lib.read_bytes()[:100])  # a machine stopped while it was written
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    got = CPolicy(b).act(x)
    assert lib.stat().st_size > 100  # built again in its place
    monkeypatch.setenv("BPD_CACHE_DIR", "off")
    np.testing.assert_array_equal(got, CPolicy(a).act(x))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_every_input_of_an_emulated_measurement_is_in_its_key(monkeypatch, tmp_path):
    """Changing any one thing the build, the run or the count reads changes the key; comments do not."""
    pytest.importorskip("unicorn")
    from firmware_host.measure import build
    from firmware_host.measure.bench import BENCH, emulate_key

    d = _export(tmp_path / "a", "bpd export --out a")
    obs = np.zeros((2, 5), np.float32)
    boards = tmp_path / "boards"
    shutil.copytree(build.BOARDS, boards)
    monkeypatch.setattr(build, "BOARDS", boards)

    def key(target="cortex-m4f", srcs=None, o=obs, strict=(), objs=("policy", "policy_weights"), fast=False):
        srcs = srcs or [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"]
        return emulate_key(target, srcs, [d, BENCH], o, 2, set(strict), list(objs), fast).hexdigest()

    first = key()
    assert first == key() and first is not None
    others = [key("cortex-m7"), key(o=obs + 1), key(strict=[d / "policy.c"]), key(objs=("policy",)),
              key(fast=True), key(srcs=[d / "policy_weights.c", d / "policy.c", BENCH / "bench_bpd.c"])]
    (d / "policy_config.h").write_text((d / "policy_config.h").read_text() + "\nextern int bpd_unused_x;\n")
    others.append(key())  # a header changed, though no source names it in the key
    (boards / "cortex-m.ld").write_text((boards / "cortex-m.ld").read_text() + "\n/* x */\n")
    others.append(key())  # the linker script: its bytes count
    assert first not in others and len(set(others)) == len(others)
    (d / "policy.c").write_text("#error not C\n")
    assert key() is None  # a source the preprocessor refuses: no key, built and not kept


def test_the_dsp_layer_search_answers_from_memory_with_fresh_lists():
    from export.dsp import Act, best_layer

    wq = np.array([[3, -2, 0, 5], [0, 4, 1, 0], [7, 0, 0, -1]], np.int64)
    bq = np.array([10, -20, 30], np.int64)
    pairs = [(0, 1), (2, 3)]
    act = Act("store", np.zeros(3, np.int64))
    lines, table, rcg = best_layer(wq, bq, pairs, act)
    lines.append("    tampered"), table.append(0)
    again = best_layer(wq, bq, pairs, act)
    assert again[0] == lines[:-1] and again[1] == table[:-1] and again[2] == rcg  # the caller's edits stay its own
    other = best_layer(wq, bq + 1, pairs, act)  # another bias: answered afresh
    assert other[1] != again[1]


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_the_simulated_device_is_compiled_once_and_copied_whole(monkeypatch, tmp_path):
    """A trial on `--port sim` builds its device in a directory of its own: the second build of the same sources
    is the cache's library copied there, byte for byte the library compiled with no cache; another rig period (its
    generated header) is compiled anew."""
    import dataclasses
    import filecmp

    from firmware_host.rig import device, load_rig
    from firmware_host.rig.device import SoftwareDevice, build_device_library

    spec = load_rig("gym-inverted-pendulum")
    monkeypatch.setenv("BPD_CACHE_DIR", "off")
    off = build_device_library(tmp_path / "off", spec)
    assert not (tmp_path / "cache").exists()
    monkeypatch.setenv("BPD_CACHE_DIR", str(tmp_path / "cache"))
    first = build_device_library(tmp_path / "t1", spec)
    (kept,) = (tmp_path / "cache" / "device-lib").glob("libbpdfw-*.so")
    compiled = []
    real = device.compile_to
    monkeypatch.setattr(device, "compile_to", lambda *a, **k: compiled.append(a) or real(*a, **k))
    second = build_device_library(tmp_path / "t2", spec)
    assert compiled == [] and second.parent == tmp_path / "t2" and second.name == first.name
    assert filecmp.cmp(second, off, shallow=False) and filecmp.cmp(kept, off, shallow=False)
    assert SoftwareDevice(spec, second).act_dim == spec.act_dim
    build_device_library(tmp_path / "t3", dataclasses.replace(spec, period_us=spec.period_us * 2))
    assert len(compiled) == 1 and len(list((tmp_path / "cache" / "device-lib").glob("libbpdfw-*.so"))) == 2
