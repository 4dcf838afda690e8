"""Every `bpd` command's --help renders: argparse expands each option's help with %-formatting, so a bare per-cent
sign in a help text (`99 % of`) turns `--help` into a traceback instead of the text."""

import argparse

from bpd_app.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, prefix: str = "bpd"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


def test_every_command_help_renders_with_its_defaults():
    seen = []
    for name, p in _parsers(build_parser(None)):
        text = p.format_help()
        assert text.startswith("usage: "), name
        seen.append(name)
    assert {"bpd compress", "bpd distill", "bpd export", "bpd experiment run"} <= set(seen)
    compress = dict(_parsers(build_parser(None)))["bpd compress"].format_help()
    assert "2.3 % of episodes" in " ".join(compress.split())  # the per-cent sign escaped, shown once
