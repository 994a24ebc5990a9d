"""equidmri.sims: synthetic data sets."""
