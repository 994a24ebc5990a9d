"""The page of ``equidmri bench spherical-layers``: settings, the layer × activation tables per subject, the dipy
denoisers beside them, the activations' own rotation errors and the figure."""

from __future__ import annotations

from typing import Any

from equidmri.bench.report import fmt, header_lines

__all__ = ["render_markdown"]


def _settings(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    snrs = ", ".join(f"{x:g}" for x in s["snrs"])
    return [
        "## Settings",
        "",
        f"SNRs (b=0 signal over Rician σ): {snrs}. Training: Adam, lr {s['lr']}, batch {s['batch_size']}, "
        f"{s['epochs']} epochs over {s['copies']} noise realisation(s) per training voxel and SNR; hidden width "
        f"{s['width']} (dense: {8 * s['width']} units); seed {s['seed']}. White matter: FA > {s['wm_fa']} of the clean "
        f"signal's tensor fit. Rotation error: {s['rotations']} random rotation(s) of the clean WM test voxels plus "
        "Gaussian noise of σ = 0.1 b=0 (SNR 10), projected onto lmax 8 so that the rotated input is exactly the "
        "rotated function.",
        "",
        f"Run time: {record['elapsed_s']:.0f} s wall, {record['cpu_s']:.0f} s CPU (this process, imports excluded).",
        "",
    ]


def _subject_table(record: dict[str, Any], subject: dict[str, Any]) -> list[str]:
    name, snrs = subject["name"], record["settings"]["snrs"]
    middle = snrs[len(snrs) // 2]
    rows = [r for r in record["rows"] if r["subject"] == name]
    networks = {n["method"]: n for n in record["networks"] if n["subject"] == name}
    dipy = {}
    for t in record["dipy_timings"]:
        if t["subject"] == name:
            dipy.setdefault(t["method"], []).append(t["us_per_voxel"])
    methods = list(dict.fromkeys(r["method"] for r in rows))
    rmse_columns = " | ".join(f"RMSE @ SNR {x:g}" for x in snrs)
    lines = [
        f"## {name}: {subject['description']}",
        "",
        f"{subject['n_train']} training voxels, {subject['n_test']} test voxels, {subject['n_wm']} of them in white "
        f"matter (scored); RMSE of the DW signal over the clean median b=0 ({subject['s0']:.4g}). FA, MD and peak "
        f"columns at SNR {middle:g}: mean absolute error against the clean signal's (MD in 10⁻³ mm²/s), first CSD "
        "peak angle in degrees. Runtimes: µs per voxel on this machine's CPU (dipy: the whole volume, every voxel).",
        "",
        f"| method | {rmse_columns} | FA MAE | MD MAE | peak angle ° | rotation error | forward µs | "
        "train step µs | parameters |",
        "|" + "---|" * (len(snrs) + 8),
    ]
    for method in methods:
        mine = {r["snr"]: r for r in rows if r["method"] == method}
        at = mine[middle]
        net = networks.get(method, {})
        forward = net.get("forward_us_per_voxel")
        if method in dipy:
            forward = sum(dipy[method]) / len(dipy[method])
        md = None if at["md_mae"] is None else at["md_mae"] * 1e3
        rmses = " | ".join(fmt(mine[x]["signal_rmse"], ".4f") for x in snrs)
        lines.append(
            f"| {method} | {rmses} | {fmt(at['fa_mae'], '.4f')} | {fmt(md, '.4f')} | "
            f"{fmt(at['peak_angle_deg'], '.1f')} | {fmt(net.get('rotation_error'), '.4f')} | {fmt(forward, '.1f')} | "
            f"{fmt(net.get('train_step_us_per_voxel'), '.1f')} | {net.get('parameters', '–')} |"
        )
    best = {}
    for snr in snrs:
        candidates = [r for r in rows if r["snr"] == snr and r["kind"] != "reference"]
        best[snr] = min(candidates, key=lambda r: r["signal_rmse"])
    lines += ["", "Lowest signal RMSE per SNR: " + "; ".join(
        f"SNR {snr:g}: {row['method']} ({row['signal_rmse']:.4f})" for snr, row in best.items()) + ".", ""]  # fmt: skip
    return lines


def _activation_table(record: dict[str, Any]) -> list[str]:
    lines = [
        "## The activations alone: rotation-invariance error on one real voxel",
        "",
        "small_64D's highest-FA voxel, zero-mean SH fit (lmax 8) scaled to a maximum of 1; the activation applied to "
        "the function's values on 3072 HEALPix points (signal space) or to its SH coefficients (SH space), the "
        "result fitted to lmax 8; error ‖act(R f) − R act(f)‖ / ‖R act(f)‖ over 3 random rotations.",
        "",
        "| activation | signal space | SH space |",
        "|---|---|---|",
    ]
    errors = {(r["activation"], r["space"]): r["rotation_error"] for r in record["activation_rotation"]}
    for name in record["settings"]["activations"]:
        lines.append(f"| {name} | {errors[(name, 'signal')]:.2e} | {errors[(name, 'sh')]:.2e} |")
    return lines + [""]


def render_markdown(record: dict[str, Any], figure_name: str) -> str:
    """The whole page."""
    lines = header_lines("Spherical layers × activations on a denoising autoencoder (WP5)", record)
    lines += _settings(record)
    for subject in record["subjects"]:
        lines += _subject_table(record, subject)
    lines += _activation_table(record)
    lines += [f"![one voxel through each activation in each space]({figure_name})", ""]
    return "\n".join(lines)
