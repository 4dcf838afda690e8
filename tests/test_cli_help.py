"""Every `bpd` command's --help renders: argparse expands each option's help with %-formatting, so a bare per-cent
sign in a help text (`99 % of`) turns `--help` into a traceback instead of the text."""

import argparse

from bpd_app.cli import build_parser
from bpd_app.parser import GROUPS


def _parsers(parser: argparse.ArgumentParser, prefix: str = "bpd"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


def test_every_command_help_renders_with_its_defaults():
    helps = {name: p.format_help() for name, p in _parsers(build_parser(None))}
    assert all(text.startswith("usage: ") for text in helps.values())
    assert {"bpd compress", "bpd distill", "bpd export", "bpd experiment run"} <= set(helps)
    compress = " ".join(helps["bpd compress"].split())
    assert "2.3 % of episodes" in compress  # the per-cent sign escaped, shown once
    assert "passes 200 further clean episodes with probability 0.01 (20: 0.63)" in compress


def test_bpd_help_names_each_groups_subcommands_and_how_to_get_more_help():
    helps = {name: " ".join(p.format_help().split()) for name, p in _parsers(build_parser(None))}
    top = helps["bpd"]
    for group, subs in (("teacher", "train, import"), ("rig", "sim, pil, check"), ("hil", "run, report"),
                        ("firmware", "build, flash"), ("experiment", "run, table, status")):
        assert f"{group} {subs}: " in top, group
        assert helps[f"bpd {group}"].split(" positional arguments")[0].endswith(subs + ": " + GROUPS[group])
    assert " commands " not in top  # no group reads as its own name plus `commands`
    assert "bpd COMMAND --help" in top and "BPD_DEBUG=1" in top


def test_no_help_text_leans_on_the_projects_issue_tracker():
    """A user reading --help has no access to 'issue 34': each help says what it means in words."""
    import re

    helps = {name: " ".join(p.format_help().split()) for name, p in _parsers(build_parser(None))}
    assert not {name for name, text in helps.items() if re.search(r"\bissue \d+", text)}
    assert "the student must not fall where the teacher does not" in helps["bpd compress"]
