"""pidsafe.reaper: see DESIGN.md, "Layers"."""
