"""What `bpd bench`'s markdown says its flash figures count.

Known answer: the figures of a demo export's shipped integer-interp kernel on Cortex-M4F, its bench image
2,444 B of flash of which the policy's own code and data are 1,756 B (the figure export_report.json gives).
"""

from firmware_host.measure.bench import _summarise
from firmware_host.measure.bench_report import markdown


def _res() -> dict:
    m4f = {"instructions_median": 258, "cycles_estimate": 398.0, "us_estimate": 2.37, "flash_bytes": 2444,
           "policy_bytes": 1756,
           "ram_bytes": 1092, "stack_bytes": 240}
    return {"targets": ["cortex-m4f"],
            "arithmetic_floor": {"instructions": 97, "macs": 59, "bias_adds": 16, "activations": 16, "output_ops": 2},
            "networks": {"student": {"widths": [4, 10, 5, 1], "runtimes": {
                "bpd-integer": {"host": {"median_ns": 53.0}, "cortex-m4f": m4f}}}},
            "export_kernels": {"shipped": "integer-interp", "rule": "fewest estimated cycles",
                               "measured_on": "cortex-m4f", "candidates": {
                                   "integer-interp": {"instructions": 258, "cycles": 398.0, "flash_bytes": 1756,
                                                      "samples": 3}}}}


def test_bench_flash_is_labelled_as_the_whole_image_beside_the_policy_flash():
    res = _res()
    _summarise(res, res["arithmetic_floor"])
    md = markdown(res)
    lines = md.splitlines()
    assert "| cortex-m4f instr / est. cycles / est. us / image flash B / RAM B / stack B |" in lines[0]
    # the cycles the export chose the kernel by, beside the microseconds they give at the model's clock; the runtime
    # named with the form the export shipped (bpd-integer is the family)
    assert "| student 4-10-5-1 | bpd-integer (integer-interp) | 53 | - | 258 / 398 / 2.4 / 2444 / 1092 / 240 |" in lines
    assert "| integer-interp (shipped) | 258 | 398 | 1756 |" in lines  # the policy alone, as the export reports it
    # a dense teacher's export measured 415062 instructions where the bench's row gave 415060: the two medians said
    assert ("Kernels the export built and measured (cortex-m4f, the median call of the export's own 3 observations: "
            "the shipped kernel's figures may differ a little from its row above, the median of the bench's "
            "--samples); it ships **integer-interp**: fewest estimated cycles.") in lines
    assert "- cortex-m4f, bpd-integer (integer-interp): 258 instructions, 2444 B image flash; 2.7x the floor." in lines
    note = lines[-1]
    assert "whole bench image" in note and "policy_bytes" in note and "export_report.json" in note
    assert "exact" in note and "estimated" in note and "(cortex-m4f 168 MHz)" in note and "docs/cycle_model.md" in note


def test_bench_names_a_kernel_by_its_family_only_where_the_export_shipped_no_other_form():
    res = _res()
    res["export_kernels"]["shipped"] = "integer"
    md = markdown(res)
    assert "| student 4-10-5-1 | bpd-integer | 53 | - | 258 / 398 / 2.4 / 2444 / 1092 / 240 |" in md.splitlines()
    res["networks"]["student"]["runtimes"]["bpd-integer"]["cortex-m4f"] |= {"stack_bytes": None}
    assert "| 258 / 398 / 2.4 / 2444 / 1092 / - |" in markdown(res)  # not bounded: a dash, said in the note


def test_a_teacher_export_is_named_a_teacher_not_a_student():
    """`bpd export TEACHER.npz` exports the teacher itself (export.json kind 'teacher'); bench called its rows and
    floor the student's. bench.json records the kind; its network key stays 'student' (the export measured)."""
    res = _res() | {"kind": "teacher"}
    lines = markdown(res).splitlines()
    assert "| teacher 4-10-5-1 | bpd-integer (integer-interp) | 53 | - | 258 / 398 / 2.4 / 2444 / 1092 / 240 |" in lines
    assert ("Arithmetic floor of the teacher: 97 instructions (59 nonzero multiply-adds, 16 bias adds, 16 activations, "
            "2 output ops).") in lines
    assert not any("student" in line for line in lines[:3])
    lines = markdown(res | {"kind": "student"}).splitlines()
    assert ("Arithmetic floor of the student: 97 instructions (59 nonzero multiply-adds, 16 bias adds, 16 "
            "activations, 2 output ops).") in lines and lines[2].startswith("| student 4-10-5-1 |")


def test_a_host_count_left_out_for_want_of_valgrind_is_said_so():
    """Without valgrind the host instr column is '-' (callgrind counts it): the note says why and how to install it;
    where every host build was counted it says nothing of it."""
    res = _res()  # its host build: timed, not counted
    assert markdown(res).splitlines()[-1].endswith(
        "A stack of '-': code whose stack use the compiler leaves unbounded, not measured. A host instr of '-': not "
        "counted, valgrind (callgrind) is not installed (apt-get install valgrind).")
    res["networks"]["student"]["runtimes"]["bpd-integer"]["host"]["callgrind_instructions"] = 212.0
    lines = markdown(res).splitlines()
    assert "valgrind" not in lines[-1] and "| bpd-integer (integer-interp) | 53 | 212 |" in lines[2]


def test_the_shipped_integer_kernel_keeps_its_summary_line_beside_the_int_kernel():
    """Known answer: `bpd export --int` of a student whose export ships integer-table (567 instructions, 4,004 B image),
    its OUT/int kernel 397 instructions and 7,128 B: both are runtime bpd-integer, and the summary's line for the
    shipped kernel gave OUT/int's figures (397 instructions, 7128 B, 1.1x the floor) and dropped its ratio to the
    teacher. Each now keeps its own line."""
    res = _res()
    res["export_kernels"]["shipped"] = "integer-table"
    res["arithmetic_floor"]["instructions"] = 358
    res["networks"]["student"]["runtimes"]["bpd-integer"]["cortex-m4f"] |= {"instructions_median": 567,
                                                                            "flash_bytes": 4004}
    res["networks"]["student_int"] = {"widths": [4, 10, 5, 1], "runtimes": {"bpd-integer": {
        "host": {"median_ns": 20.0}, "cortex-m4f": res["networks"]["student"]["runtimes"]["bpd-integer"]["cortex-m4f"]
        | {"instructions_median": 397, "flash_bytes": 7128}}}}
    _summarise(res, res["arithmetic_floor"])
    m4f = res["summary"]["cortex-m4f"]
    assert (m4f["bpd-integer"]["instructions"], m4f["bpd-integer"]["flash_bytes"]) == (567, 4004)
    own = m4f["student_int bpd-integer"]
    assert (own["instructions"], own["flash_bytes"]) == (397, 7128)
    lines = markdown(res).splitlines()
    assert "- cortex-m4f, bpd-integer (integer-table): 567 instructions, 4004 B image flash; 1.6x the floor." in lines
    assert ("- cortex-m4f, student_int bpd-integer: 397 instructions, 7128 B image flash; 1.1x the floor; "
            "bpd-integer (integer-table) instructions / student_int bpd-integer's 1.4x.") in lines


def test_bench_says_why_each_other_kernel_the_export_weighed_did_not_ship():
    """export/README promised the integer kernels' verdicts in `bpd bench`'s output; it printed the candidates'
    figures and the rule only, so an integer kernel at a third of the shipped kernel's cycles, or a kernel not built at
    all, stood there unexplained. bench.json records the report's verdicts and what auto did not build; bench.md lists
    them under the table."""
    from firmware_host.measure.bench import export_kernels

    res = _res()
    res["export_kernels"]["verdicts"] = {
        "integer": "over the integer kernel's flash limit (2000 B: --flash-budget)",
        "compact": "not built: at least 2304 B of flash (8 B per nonzero weight), over the 2000 B budget"}
    lines = markdown(res).splitlines()
    i = lines.index("Not shipped:")
    assert lines[i - 2] == "| integer-interp (shipped) | 258 | 398 | 1756 |" and lines[i + 1:i + 3] == [
        "- integer: over the integer kernel's flash limit (2000 B: --flash-budget)",
        "- compact: not built: at least 2304 B of flash (8 B per nonzero weight), over the 2000 B budget"]
    assert "Not shipped:" not in markdown(_res())
    # from the export's report: the shipped kernel's own verdict (its closed-loop check) is the rule's, not repeated
    k = {"kind": "integer", "variant": "integer-interp", "rule": "fewest", "measured_on": "cortex-m4f",
         "skipped": {"compact": "not built"}, "candidates": {
             "integer-interp": {"cost": {"cycles": 398.0}, "verdict": "return kept"},
             "integer": {"cost": {"cycles": 300.0}, "verdict": "over the limit"}, "generic": {"cost": {"cycles": 9.0}}}}
    assert export_kernels(k)["verdicts"] == {"integer": "over the limit", "compact": "not built"}
