"""Cameras: the pose convention and pose files (path.py), named moves (moves.py), conventions, plots."""
