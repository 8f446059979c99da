"""Devices: building and running a project (host, QEMU) and flashing a board (the targets are `dqa_mcu.targets`)."""
