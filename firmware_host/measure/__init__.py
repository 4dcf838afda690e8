"""Measurement of the firmware: builds, emulation, the cycle model, stack, `bpd bench`, PIL, flash, fuzzing."""
