"""Studies, pre-generation, scheduling, tallies and statistics (see docs/interfaces.md)."""
