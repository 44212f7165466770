"""The pure planner and the local executor."""
