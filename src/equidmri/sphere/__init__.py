"""equidmri.sphere."""
