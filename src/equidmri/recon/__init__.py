"""equidmri.recon."""
