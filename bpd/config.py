"""Typed dataclass configs turned into argparse options, one help line per field."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import typing
from typing import Any, get_args, get_origin

from bpd.errors import BpdError


def field(default: Any = dataclasses.MISSING, help: str = "", choices: tuple | None = None,
          positional: bool = False, flag: str | None = None) -> Any:
    """A dataclass field carrying its command-line help."""
    meta = {"help": help, "choices": choices, "positional": positional, "flag": flag}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(type(default), default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        tp = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("positional"):
            parser.add_argument(f.name, type=tp if tp in (int, float) else str, **kwargs)
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if tp is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
            kwargs["default"] = bool(f.default)
            flag = meta.get("flag") or switch_flag(f.name, bool(f.default))
            if f.default:
                kwargs["help"] = f"turn off (on by default): {kwargs['help']}"
        elif get_origin(tp) is list:
            (elem,) = get_args(tp)
            kwargs["type"] = elem
            kwargs["nargs"] = "+"
            if f.default_factory is not dataclasses.MISSING:
                kwargs["default"] = f.default_factory()
            elif has_default:
                kwargs["default"] = f.default
            else:
                kwargs["required"] = True
        else:
            kwargs["type"] = tp
            if has_default:
                kwargs["default"] = f.default
            else:
                kwargs["required"] = True
        if has_default and tp is not bool and kwargs.get("default") is not None:
            kwargs["help"] += f" (default: {kwargs['default']})"
        parser.add_argument(flag, dest=f.name, **kwargs)


def from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    """The config of a parsed command line; every float given must be finite."""
    cfg = cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
    check_finite(cfg)
    return cfg


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def switch_flag(name: str, on_by_default: bool) -> str:
    """The one spelling of a switch: --x turns on what is off by default, --no-x turns off what is on."""
    return "--no-" + flag_name(name)[2:] if on_by_default else flag_name(name)


def check_finite(cfg: Any) -> None:
    """NaN or Inf in any float field (or list of floats) is a one-line error naming the flag."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, float) and not math.isfinite(x):
                raise BpdError(f"{flag_name(f.name)} must be a finite number (got {x})")


def check_ranges(cfg: Any, rules: dict[str, tuple]) -> None:
    """Check numeric fields against bounds: rules maps a field to (low, high), either None for open,
    or (low, high, "open") to exclude the low bound. A None value (a default to be resolved) passes;
    for a list every element is checked. The first violation is a one-line BpdError naming the flag."""
    for name, rule in rules.items():
        low, high, *kind = rule
        v = getattr(cfg, name)
        for x in (v if isinstance(v, list) else [v]):
            if x is None:
                continue
            if isinstance(x, float) and not math.isfinite(x):
                raise BpdError(f"{flag_name(name)} must be a finite number (got {x})")
            if low is not None and (x <= low if kind else x < low):
                raise BpdError(f"{flag_name(name)} must be {'above' if kind else 'at least'} {_num(low)} "
                               f"(got {_num(x)})")
            if high is not None and x > high:
                raise BpdError(f"{flag_name(name)} must be at most {_num(high)} (got {_num(x)})")
        if isinstance(v, list) and not v:
            raise BpdError(f"{flag_name(name)} needs at least one value")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
