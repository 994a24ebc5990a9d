"""equidmri.cli."""
