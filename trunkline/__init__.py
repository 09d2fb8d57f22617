"""Trunkline's composition root: configuration, wiring of the packages, and the ``trunkline`` command."""
