"""The error of a training that fails, in a module without torch, so that the command line catches it without
importing torch (:mod:`equidmri.recon.train` raises it and re-exports it)."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""
