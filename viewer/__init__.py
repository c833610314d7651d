"""render3d.viewer: the viser web viewer (live training view, render modes, camera paths)."""
