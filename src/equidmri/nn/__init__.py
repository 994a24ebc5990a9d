"""equidmri.nn."""
