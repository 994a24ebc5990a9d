"""Cross-scanner harmonization of diffusion MRI (issue 20; Sadegheih, Weninger & Merhof 2023, WP1).

Site A's scans are mapped onto site B's (the reference) protocol and signal. Harmonizers are registered in
:mod:`equidmri.harmonize.registry`; the per-shell SH space they share is :mod:`equidmri.harmonize.shells`; the
evaluation (signal, FA and MD errors, SSIM, Wilcoxon tests) is :mod:`equidmri.harmonize.metrics`. Simulated
two-scanner cohorts come from :mod:`equidmri.sims.scanners`.

The names are imported on first use (:mod:`equidmri.lazy`), so that reading the registry needs no numpy or dipy.
"""

from __future__ import annotations

from equidmri.lazy import lazy_attributes

_PUBLIC = {  # name -> the module that defines it
    "HARMONIZERS": "equidmri.harmonize.registry",
    "find_harmonizer": "equidmri.harmonize.registry",
    "get_harmonizer": "equidmri.harmonize.registry",
    "HarmonizedDWI": "equidmri.harmonize.sh_methods",
    "PairedSubject": "equidmri.harmonize.subjects",
    "paired_subset": "equidmri.harmonize.subjects",
    "split_cohort": "equidmri.harmonize.subjects",
    "harmonization_errors": "equidmri.harmonize.metrics",
    "wilcoxon_test": "equidmri.harmonize.metrics",
}

__all__ = sorted(_PUBLIC)

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
