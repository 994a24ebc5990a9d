"""equidmri.viz."""
