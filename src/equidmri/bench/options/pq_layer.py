"""Time and peak memory of one p×q-space layer (Müller et al., arXiv:2102.06942) on a 16³ × 90-q input.

``equidmri bench pq-layer``. Two layers of the lesion network (:class:`equidmri.nn.models.PQSegmentationNet`,
default widths): ``first``, the DWI's scalars (1x0e) -> the hidden irreps with their gates, and ``hidden``, the
hidden irreps -> the same. Each case is a layer, a kernel and a method (:class:`equidmri.nn.layers.PQConv`):

- ``tp-pqw``, ``tp-pwq``: the tensor-product kernel, separable (p-stencils, then the q-matrix and the weights in
  either order), never forming the 6D kernel;
- ``tp-dense``: the same kernel built as the ``(k³, Q, Q, D_in, D_out)`` 6D kernel and one ``conv3d`` (the
  reference code's algorithm);
- ``combined-dense``: the combined-offset kernel, Y(Δp - Δq), which does not separate.

Input ``(1, Q, E, E, E, D_in)`` float32, E = 16 voxels, Q = 90 q-samples (b = 1000, 2000, 3000 s/mm², 30 random
directions each, seed 0), 3x3x3 p-kernel, lmax_p 1, lmax_q 2, 2 radial functions each. Each case runs in a
fresh Python process (with ``--quick`` all in this one, a smoke test of the code path): build the layer, one
warm-up, then ``--repeats`` timed runs (fewer if the warm-up says they would exceed ``--budget`` seconds),
first ``fwd`` (a forward under ``torch.inference_mode``), then ``fwdbwd`` (forward and backward of the output
sum), skipped when three forward warm-ups would exceed the budget. Peak memory: the peak resident set size
during the runs of a pass minus the resident set size before the layer was built (after both passes through
the same kind of layer at 12 q-samples on a 4³ volume, so that torch's lazy initialisation is not counted), MiB,
with the kernel's reset of the peak counter as ``equidmri bench layers`` uses it; ``fwdbwd`` runs after
``fwd`` in the same process, so its peak is at least that of ``fwd``. Multiply-adds are counted from the shapes
(:func:`equidmri.nn.layers.pq_space.macs_per_voxel`), for every layer and method whether it ran or not.
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES as CATALOG
from equidmri.bench.options.efficiency import add_repeat_args
from equidmri.bench.report import add_report_args

NAME = "pq-layer"
RESULTS = "pq_layer"
LAYERS = ("first", "hidden")
VARIANTS = {  # name -> (kernel, method)
    "tp-pqw": ("tp", "pqw"),
    "tp-pwq": ("tp", "pwq"),
    "tp-dense": ("tp", "dense"),
    "combined-dense": ("combined", "dense"),
}
# (layer, variant): all four on the first layer; on the hidden one the cheapest separable order and the dense
# kernel (combined; tp-dense costs the same multiply-adds), which take minutes each otherwise
DEFAULT_CASES = (
    *(f"first:{variant}" for variant in VARIANTS),
    "hidden:tp-pwq",
    "hidden:combined-dense",
)
QUICK_CASES = ("first:tp-pqw", "first:combined-dense")
EDGE = 16  # voxels per edge
N_Q = 90  # q-samples
QUICK_EDGE, QUICK_N_Q = 4, 12
DEFAULT_REPEATS = 3
QUICK_REPEATS = 1
DEFAULT_BUDGET_S = 30.0  # per pass: fewer repeats beyond this


def case(text: str) -> str:
    """``LAYER:VARIANT``, checked (argparse type)."""
    layer, _, variant = text.partition(":")
    if layer not in LAYERS or variant not in VARIANTS:
        raise argparse.ArgumentTypeError(f"expected LAYER:VARIANT with LAYER in {LAYERS} and VARIANT in "
                                         f"{tuple(VARIANTS)}, got {text!r}")  # fmt: skip
    return text


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench pq-layer``."""
    parser = subparsers.add_parser(
        NAME, help=CATALOG[NAME].summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_report_args(
        parser,
        RESULTS,
        f"{' and '.join(QUICK_CASES)} on a {QUICK_EDGE}³ × {QUICK_N_Q}-q input, {QUICK_REPEATS} repeat",
    )
    parser.add_argument(
        "--cases",
        type=case,
        nargs="+",
        metavar="LAYER:VARIANT",
        help=f"what to measure (default {' '.join(DEFAULT_CASES)})",
    )
    add_repeat_args(parser, DEFAULT_REPEATS, QUICK_REPEATS, DEFAULT_BUDGET_S, "pass")
    for option, kind in (("case", str), ("edge", int), ("n-q", int), ("output", str)):
        parser.add_argument(f"--child-{option}", type=kind, help=argparse.SUPPRESS)
    return parser
