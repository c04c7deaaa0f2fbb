"""pidsafe.userns: see DESIGN.md, "Layers"."""
