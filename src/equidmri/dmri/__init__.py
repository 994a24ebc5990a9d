"""equidmri.dmri."""
