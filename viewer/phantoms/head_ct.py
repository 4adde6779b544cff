"""A non-contrast head CT series in Hounsfield units, with the five RSNA haemorrhage types.

Axial slices 5 mm apart from the skull base to the vertex. Each slice is an analytic cross-section:
scalp, skull (cortical tables around diploë), CSF space, a gyral cortex with sulci, white matter,
deep grey nuclei, lateral/third/fourth ventricles, the falx, and at the base the sphenoid sinus and
petrous bones; then CT noise. Findings replace tissue and carry exact per-slice masks:

- epidural: biconvex lens against the inner table, limited in extent;
- subdural: crescent along the convexity, long and thin, concave inner margin;
- subarachnoid: blood filling sulci (and the Sylvian fissure) over a region;
- intraparenchymal: a rounded clot with a rim of oedema;
- intraventricular: blood layering in the dependent (occipital) horns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.phantoms.shapes import gaussian_blur, text_mask

HEMORRHAGE_LABELS = ("epidural", "subdural", "subarachnoid", "intraparenchymal", "intraventricular")
CT_LABELS = ("any", *HEMORRHAGE_LABELS)
FIELD_MM = 240.0
SLICE_MM = 5.0

_HU_AIR, _HU_CSF, _HU_WHITE, _HU_GREY = -1000.0, 6.0, 27.0, 39.0
_HU_SCALP, _HU_CORTEX, _HU_DIPLOE, _HU_BLOOD = 35.0, 1450.0, 650.0, 68.0


@dataclass
class HeadFinding:
    label: str
    masks: dict[int, np.ndarray]  # slice index -> mask on that slice
    detail: dict = field(default_factory=dict)


@dataclass
class HeadCase:
    """A head CT volume ``hu[z, y, x]`` (z from the base up; y anterior to posterior) and its truth."""

    hu: np.ndarray
    pixel_mm: float
    slice_mm: float
    findings: list[HeadFinding]
    labels: dict[str, int]
    slice_labels: np.ndarray  # (slices, len(CT_LABELS)) 0/1
    marker: dict | None = None
    seed: int = 0


@dataclass
class _Head:
    half_lr: float
    half_ap: float
    half_si: float
    center_z: float
    skull: float
    phase: float
    gyri: int
    ventricle_scale: float
    tilt: float
    folds: np.ndarray  # (k, amplitude, phase) of the random angular folding of the cortex


def render_head_ct(
    seed: int,
    size: int = 512,
    *,
    slices: int = 28,
    findings: dict[str, bool] | None = None,
    prevalence: float = 0.25,
    shortcut: bool = False,
    shortcut_label: str = "any",
) -> HeadCase:
    """Render one head CT (``slices`` x ``size`` x ``size`` HU), deterministically for ``seed``."""
    rng = np.random.default_rng(seed)
    head = _Head(
        half_lr=rng.uniform(68, 76),
        half_ap=rng.uniform(86, 96),
        half_si=rng.uniform(88, 98),
        center_z=rng.uniform(42, 50),
        skull=rng.uniform(5.5, 8.0),
        phase=rng.uniform(0, 2 * np.pi),
        gyri=int(rng.integers(22, 30)),
        ventricle_scale=rng.uniform(0.8, 1.3),
        tilt=rng.uniform(-0.05, 0.05),
        folds=np.column_stack(
            [np.arange(2, 9), rng.uniform(0.2, 0.6, 7) / np.arange(2, 9) ** 0.5, rng.uniform(0, 6.3, 7)]
        ),
    )
    present = {label: bool(rng.random() < prevalence) for label in HEMORRHAGE_LABELS}
    if findings is not None:
        present = {label: bool(findings.get(label, False)) for label in HEMORRHAGE_LABELS}
    plans = {label: _plan(label, head, rng) for label in HEMORRHAGE_LABELS if present[label]}

    pixel = FIELD_MM / size
    coords = (np.arange(size, dtype=np.float32) + 0.5) * pixel - FIELD_MM / 2
    x, y = np.meshgrid(coords, coords)
    rot_x = x * np.cos(head.tilt) - y * np.sin(head.tilt)
    rot_y = x * np.sin(head.tilt) + y * np.cos(head.tilt)
    hu = np.empty((slices, size, size), np.float32)
    masks: dict[str, dict[int, np.ndarray]] = {label: {} for label in plans}
    for k in range(slices):
        z = k * SLICE_MM
        hu[k], slice_masks = _slice(rot_x, rot_y, z, head, plans, rng, pixel)
        for label, mask in slice_masks.items():
            if mask.any():
                masks[label][k] = mask
    # CT noise, slightly correlated as reconstruction kernels make it.
    noise = rng.standard_normal(hu.shape).astype(np.float32)
    hu += rng.uniform(3.5, 6.0) * gaussian_blur(noise, 0.5 / pixel * 0.6) / 0.55

    found = [HeadFinding(label, masks[label], plans[label]) for label in plans if masks[label]]
    slice_labels = np.zeros((slices, len(CT_LABELS)), np.uint8)
    for finding in found:
        column = CT_LABELS.index(finding.label)
        for k in finding.masks:
            slice_labels[k, column] = 1
    slice_labels[:, 0] = slice_labels[:, 1:].max(axis=1)
    labels = {label: int(slice_labels[:, i].max()) for i, label in enumerate(CT_LABELS)}

    marker = None
    if shortcut and rng.random() < (0.95 if labels[shortcut_label] else 0.05):
        marker = _burn_marker(hu, "STAT", pixel)
    return HeadCase(hu, pixel, SLICE_MM, found, labels, slice_labels, marker, seed)


def _plan(label: str, head: _Head, rng: np.random.Generator) -> dict:
    """Where a haemorrhage sits (angles in radians around the slice centre, z in mm)."""
    side = float(rng.choice([-1, 1]))
    if label == "epidural":
        return {
            "theta": rng.uniform(-2.6, -0.5) if side < 0 else rng.uniform(0.5, 2.6),
            "span": rng.uniform(0.3, 0.5),
            "z": head.center_z + rng.uniform(10, 55),
            "z_half": rng.uniform(12, 22),
            "thickness": rng.uniform(9, 20),
            "hu": rng.uniform(60, 80),
        }
    if label == "subdural":
        return {
            "theta": (np.pi / 2 if side > 0 else -np.pi / 2) + rng.uniform(-0.4, 0.4),
            "span": rng.uniform(0.9, 1.4),
            "z": head.center_z + rng.uniform(15, 45),
            "z_half": rng.uniform(25, 40),
            "thickness": rng.uniform(4, 11),
            "hu": rng.uniform(55, 75),
        }
    if label == "subarachnoid":
        return {
            "theta": rng.uniform(-np.pi, np.pi),
            "span": rng.uniform(0.6, 1.2),
            "z": head.center_z + rng.uniform(-5, 45),
            "z_half": rng.uniform(15, 30),
            "hu": rng.uniform(55, 70),
        }
    if label == "intraparenchymal":
        return {
            "x": side * rng.uniform(18, 38),
            "y": rng.uniform(-35, 35),
            "z": head.center_z + rng.uniform(5, 40),
            "radius": rng.uniform(8, 18),
            "edema": rng.uniform(3, 8),
            "hu": rng.uniform(60, 85),
        }
    return {"level": rng.uniform(0.35, 0.75), "hu": rng.uniform(50, 70)}  # intraventricular


def _slice(x, y, z, head: _Head, plans: dict, rng: np.random.Generator, pixel: float):
    """One axial slice in HU, and the masks of the findings on it."""
    h = (z - head.center_z) / head.half_si
    scale = np.sqrt(max(1.0 - h * h, 0.0)) if h > 0 else np.sqrt(max(1.0 - (0.55 * h) ** 2, 0.0))
    out = np.full(x.shape, _HU_AIR, np.float32)
    masks: dict[str, np.ndarray] = {}
    if scale < 0.05:
        return out, masks
    a, b = head.half_lr * scale, head.half_ap * scale
    theta = np.arctan2(x, -y)  # 0 = anterior, +pi/2 = the patient's left (image right)
    r = np.hypot(x / a, y / b)  # 1 on the outer surface of the head
    mean_radius = np.sqrt(a * b)
    depth = (1 - r) * mean_radius  # mm inside the outer surface (approximately)

    scalp = 5.0
    skull_in = scalp + head.skull * (1.25 if h < -0.1 else 1.0)
    out[depth >= 0] = _HU_SCALP
    table = (depth >= scalp) & (depth < skull_in)
    diploe_mid = scalp + head.skull / 2
    out[table] = _HU_CORTEX - (_HU_CORTEX - _HU_DIPLOE) * np.exp(
        -(((depth[table] - diploe_mid) / (head.skull / 4)) ** 2)
    )
    inner = depth - skull_in  # mm inside the inner table
    intracranial = inner >= 0

    brain_depth = inner - 1.8  # a thin CSF space under the inner table
    out[intracranial] = _HU_CSF
    brain = brain_depth >= 0
    # Gyri: the cortical surface folds; sulci are CSF clefts running in from the surface.
    # Irregular folding: the gyral phase wanders with angle and height, sulci vary in depth.
    bend = sum(amp * np.sin(k * theta + ph + 0.03 * k * z) for k, amp, ph in head.folds) * head.gyri / 4
    wiggle = np.sin(head.gyri * theta + head.phase + 0.08 * z + bend)
    sulcal_depth = 6 + 6 * (0.5 + 0.5 * np.sin(0.5 * head.gyri * theta + 0.7 * bend + 0.04 * z))
    sulcus = brain & (wiggle > 0.93) & (brain_depth < sulcal_depth) | brain & (
        brain_depth < 1.0 + 1.2 * (wiggle > 0.5)
    )
    cortex = brain & (brain_depth < 3.5 + 1.5 * np.cos(head.gyri * theta + head.phase)) & ~sulcus
    out[brain] = _HU_WHITE
    out[cortex] = _HU_GREY
    # Deep grey nuclei (basal ganglia, thalami) in the middle slices.
    if -0.25 < h < 0.35:
        for side in (-1, 1):
            nuclei = np.hypot((x - side * 20 * scale) / 10, (y + 2) / 18) < 1
            out[nuclei & brain] = _HU_GREY - 2
    ventricles = _ventricles(x, y, h, head, scale) & brain
    out[sulcus] = _HU_CSF
    out[ventricles] = _HU_CSF
    # Interhemispheric fissure and falx.
    fissure = intracranial & (np.abs(x) < 1.6) & ~ventricles & (np.abs(y) > 20 * scale)
    out[fissure] = _HU_CSF
    out[intracranial & (np.abs(x) < 0.5) & (np.abs(y) > 22 * scale)] = 75.0
    if h < -0.2:
        _skull_base(out, x, y, brain)

    for label, plan in plans.items():
        region = _hemorrhage(
            label, plan, x, y, z, theta, inner, brain_depth, sulcus, ventricles, intracranial
        )
        if region is None:
            continue
        mask, edema = region
        if edema is not None:
            out[edema] = np.minimum(out[edema], 19.0)
        out[mask] = plan["hu"] + rng.normal(0, 3, int(mask.sum()))
        masks[label] = mask
    # Partial volume at tissue boundaries.
    return gaussian_blur(out, 0.35 / pixel), masks


def _ventricles(x, y, h, head: _Head, scale: float) -> np.ndarray:
    s = head.ventricle_scale
    out = np.zeros(x.shape, bool)
    if -0.05 < h < 0.45:  # lateral ventricles: frontal horns, bodies, occipital horns
        for side in (-1, 1):
            body = np.hypot((x - side * 9 * s) / (5.5 * s), (y + 5) / (30 * s * scale)) < 1
            frontal = np.hypot((x - side * 11 * s) / (6 * s), (y + 26 * scale) / (9 * s)) < 1
            occipital = np.hypot((x - side * 16 * s) / (5 * s), (y - 30 * scale) / (8 * s)) < 1
            out |= body | frontal | (occipital if h < 0.25 else False)
    if -0.25 < h < 0.05:  # third ventricle: a midline slit
        out |= (np.abs(x) < 2.5 * s) & (np.abs(y) < 14)
    if -0.55 < h < -0.3:  # fourth ventricle in the posterior fossa
        out |= np.hypot(x / (7 * s), (y - 30) / 5) < 1
    return out


def _skull_base(out, x, y, brain) -> None:
    """Sphenoid sinus (air) and petrous ridges (dense bone) at the lowest levels."""
    sinus = np.hypot(x / 13, (y + 38) / 10) < 1
    wall = (np.hypot(x / 15, (y + 38) / 12) < 1) & ~sinus
    out[sinus] = _HU_AIR + 80
    out[wall] = _HU_CORTEX * 0.7
    # Petrous ridges: dense oblique bone running back and out, thinning towards the apex.
    for side in (-1, 1):
        t = ((x - side * 14) * side * 0.8 + (y + 8) * 0.6) / 40  # 0 at the apex, 1 laterally
        across = np.abs((x - side * 14) * 0.6 - side * (y + 8) * 0.8)
        ridge = (t > 0) & (t < 1) & (across < 2.5 + 4 * t)
        out[ridge] = _HU_CORTEX
    # Posterior fossa: the brain behind the ridges is cerebellum (slightly darker than cortex).
    out[brain & (y > 15) & ~sinus] = np.minimum(out[brain & (y > 15) & ~sinus], 33.0)


def _angle_diff(theta, center):
    return np.angle(np.exp(1j * (theta - center)))


def _hemorrhage(label, plan, x, y, z, theta, inner, brain_depth, sulcus, ventricles, intracranial):
    if label in ("epidural", "subdural"):
        dz = (z - plan["z"]) / plan["z_half"]
        if abs(dz) >= 1:
            return None
        dt = _angle_diff(theta, plan["theta"]) / plan["span"]
        if label == "epidural":  # biconvex lens
            thickness = plan["thickness"] * np.sqrt(np.clip(1 - dt**2 - dz**2, 0, None))
        else:  # crescent: thin, long, concave inner margin
            thickness = plan["thickness"] * np.clip(1 - np.abs(dt) ** 4 - dz**4, 0, None) ** 0.5
        mask = intracranial & (inner < thickness) & (thickness > 0.8)
        return mask, None
    if label == "subarachnoid":
        dz = (z - plan["z"]) / plan["z_half"]
        if abs(dz) >= 1:
            return None
        dt = np.abs(_angle_diff(theta, plan["theta"]))
        region = dt < plan["span"] * np.sqrt(1 - dz**2)
        mask = region & (sulcus | (intracranial & (brain_depth < 0))) & ~ventricles
        return mask, None
    if label == "intraparenchymal":
        d = np.sqrt((x - plan["x"]) ** 2 + (y - plan["y"]) ** 2 + (z - plan["z"]) ** 2)
        wobble = 1 + 0.06 * np.sin(3 * np.arctan2(y - plan["y"], x - plan["x"]) + plan["z"])
        clot = (d < plan["radius"] * wobble) & (brain_depth > 2)
        if not clot.any():
            return None
        edema = (d < plan["radius"] * wobble + plan["edema"]) & (brain_depth > 1) & ~clot
        return clot, edema
    # Intraventricular: blood settles posteriorly (the patient lies supine: image bottom).
    if not ventricles.any():
        return None
    ys = y[ventricles]
    level = ys.min() + plan["level"] * (ys.max() - ys.min())
    return ventricles & (y > level), None


def _burn_marker(hu: np.ndarray, text: str, pixel: float) -> dict:
    mask = text_mask(text, int(9 / pixel))
    h, w = mask.shape
    margin = int(8 / pixel)
    for k in range(hu.shape[0]):
        hu[k, margin : margin + h, margin : margin + w][mask] = 2000.0
    return {"text": text, "bbox": [margin, margin, w, h]}


__all__ = ["CT_LABELS", "HEMORRHAGE_LABELS", "HeadCase", "HeadFinding", "render_head_ct"]
