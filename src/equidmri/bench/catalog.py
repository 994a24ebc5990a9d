"""The benchmarks of ``equidmri bench``: name -> module, parser function and one-line summary.

Read without importing the benchmarks (most load torch), so that ``equidmri bench --help`` lists them at once
and ``equidmri bench NAME`` imports only the parser module of NAME, :mod:`equidmri.bench.options`
``.<module>``, and its benchmark module ``equidmri.bench.<module>`` only when the command runs
(:mod:`equidmri.cli.bench`). Each parser takes its help line from here.
"""

from __future__ import annotations

from typing import NamedTuple


class Bench(NamedTuple):
    """One benchmark: ``equidmri.bench.options.<module>.<parser>(subparsers)`` registers it and
    ``equidmri.bench.<module>.run(args)`` runs it."""

    module: str
    parser: str
    summary: str


BENCHES = {
    "layers": Bench(
        "efficiency", "add_layers_parser", "time and memory of one E(3) × SO(3) layer along the Fig. 4 ablation"
    ),
    "unet": Bench("efficiency", "add_unet_parser", "time and memory of the SHD U-Net along the Fig. 4 ablation"),
    "throughput": Bench("throughput", "add_parser", "inference throughput and memory of SHD-TV against dipy CSD"),
    "equivariance": Bench("equivariance", "add_parser", "equivariance error of layers and U-Nets (SHD Fig. 8)"),
    "mnist": Bench("mnist", "add_parser", "R³×S² MNIST segmentation under rotations (SHD Fig. 11)"),
    "fa": Bench("fa", "add_parser", "FCN vs spherical CNN for FA from 6 directions (CDMRI 2022)"),
    "table": Bench("table", "add_parser", "all methods on the phantom (SHD paper Table 1)"),
    "realdata": Bench("realdata", "add_parser", "fODF methods against reference fODFs on real volumes"),
    "cli": Bench("cli", "add_parser", "start-up time of --help and argument errors"),
    "threads": Bench("threads", "add_parser", "deconv training time alone and beside a busy process"),
    "pretrained": Bench("pretrained", "add_parser", "the shipped pretrained SHD-TV model against dipy CSD"),
    "cohort": Bench("cohort", "add_parser", "cohort training throughput with 1 and 2 processes, and memory"),
    "harmonize": Bench("harmonize", "add_parser", "cross-scanner harmonization on a simulated two-scanner cohort"),
    "lesions": Bench("lesions", "add_parser", "SYNTHETIC lesion segmentation: p×q-space SE(3) network vs 3D CNN"),
    "pq-layer": Bench("pq_layer", "add_parser", "time and memory of one p×q-space SE(3) layer on 16³ voxels × 90 q"),
    "synthesis": Bench("synthesis", "add_parser", "synthesis modes judged by an autoencoder on real voxels (WP2)"),
    "spherical-layers": Bench(
        "spherical_layers", "add_parser", "spherical layers × activations on a denoising autoencoder (WP5)"
    ),
}
