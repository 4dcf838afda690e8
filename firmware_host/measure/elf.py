"""The symbol table of a linked image, or one clear error when the image has none (stripped)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bpd.errors import BpdError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection


def symbol_table(elf: ELFFile, path: str | Path) -> SymbolTableSection:
    from elftools.elf.sections import SymbolTableSection

    tab = elf.get_section_by_name(".symtab")
    if not isinstance(tab, SymbolTableSection):
        raise BpdError(f"{path}: no symbol table (a stripped image?)")
    return tab
