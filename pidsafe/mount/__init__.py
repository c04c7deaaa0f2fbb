"""pidsafe.mount: see DESIGN.md, "Layers"."""
