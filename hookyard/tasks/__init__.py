"""Local Cloud Tasks emulator: the `TaskEmulator` and its REST endpoint (`http`)."""

from hookyard.tasks.emulator import TaskEmulator

__all__ = ["TaskEmulator"]
