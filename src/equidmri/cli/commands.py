"""The subcommands of ``equidmri`` with their one-line summaries, and the exit codes, known without importing torch.

Each name is the module ``equidmri.cli.<name>``; :mod:`equidmri.cli.main` imports only the one asked for,
so that ``equidmri --help`` and a mistyped command answer without loading torch.
"""

EXIT_OK = 0
EXIT_FAILURE = 1  # the computation failed (diverged training)
EXIT_USAGE = 2  # bad input or options, as argparse
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout closed it early (`equidmri methods | head -1`), as Unix
# tools end then

COMMANDS = {
    "deconv": "deconvolve one volume (any method; default: train SHD-TV on it)",
    "methods": "list the fODF methods of `deconv --method`",
    "predict": "deconvolve a volume (or a cohort) with a trained network",
    "train": "train one network on a cohort of subjects (torch.distributed)",
    "demo": "deconvolve dipy's small_64D and compare with CSD",
    "phantom": "write phantoms with ground-truth fibres",
    "evaluate": "score peaks against a phantom's ground truth",
    "fa": "FA from clinical 6-direction scans (FCN or spherical CNN)",
    "synth": "synthetic training voxels from one subject's tissue statistics",
    "denoise": "voxel-wise denoising with dense or spherical networks: train on a scan, apply",
    "harmonize": "cross-scanner harmonization: learn from two sites' cohorts, apply to a scan",
    "lesions": "lesion segmentation: synthetic lesion sets, train the p×q-space or CNN model, predict",
    "bench": "benchmarks and experiments (results into --out DIR)",
}
