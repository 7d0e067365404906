"""The pipeline: the hub, per-node state, the snapshot diff, parsed events, and the mapper interface."""
