"""What a stage process needs at run time: progress, artifacts, launch."""
