"""equidmri.eval."""
