"""pidsafe.state: see DESIGN.md, "Layers"."""
