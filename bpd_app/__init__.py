"""The top of the project: the `bpd` command and what spans rooms (evaluation of any policy form,
grids of runs). The layers stack one way:

    bpd (base: config, errors, io)  <-  training, export, firmware_host, hil (rooms)  <-  bpd_app (top)

The base imports no room, a room imports the base and the rooms below it (export reads training's
files, firmware_host builds exports, hil drives firmware_host's rigs), and nothing imports bpd_app
except the `bpd` entry point and the benchmark scripts. tests/test_layering.py holds this.
"""
