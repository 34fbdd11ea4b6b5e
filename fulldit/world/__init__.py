"""The synthetic world: seeded rooms rendered with exact depth, cameras and identities (clips.py, render.py)."""
