"""pidsafe.process: see DESIGN.md, "Layers"."""
