"""`make chaos`: the real local stack, in its production shape, under faults, checked from
outside. See run.py."""
