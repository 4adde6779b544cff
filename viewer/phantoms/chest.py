"""A PA chest radiograph rendered as an X-ray projection through a randomised 3-D thorax.

The thorax is built from analytic solids (body, lungs, heart, mediastinum, trachea, spine, ribs,
clavicles, scapulae, humeral heads, diaphragm, gastric bubble, breasts) in millimetres on a
43 x 43 cm detector. Summing each solid's attenuation times its path length along the beam gives
the projection; exposure, quantum noise, detector blur and a display curve turn it into a
processed "for presentation" image where bone is white.

Findings change the anatomy before projection and carry an exact pixel mask:
nodule, consolidation, pleural effusion (meniscus, blunted costophrenic angle), cardiomegaly
(cardiothoracic ratio > 0.5) and pneumothorax (visible pleural line, no lung markings beyond it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.phantoms.shapes import (
    curve_distance,
    ellipsoid_path,
    gaussian_blur,
    smooth_noise,
    smoothstep,
    text_mask,
    tube_path,
)

CHEST_LABELS = ("nodule", "consolidation", "effusion", "cardiomegaly", "pneumothorax")
FIELD_MM = 430.0  # detector width and height
# Attenuation relative to water (soft tissue = 1).
_LUNG = 0.25
_BONE = 1.9
_MU_WATER = 0.021  # 1/mm at an effective ~60 keV: the scale of the exponent


@dataclass
class Finding:
    """One finding: its label and its pixel mask on the rendered grid."""

    label: str
    mask: np.ndarray
    side: str = ""  # "right" or "left" (the patient's)
    detail: dict = field(default_factory=dict)


@dataclass
class ChestCase:
    """A rendered radiograph, in [0, 1] with 1 the most attenuating (shown white), and its truth."""

    image: np.ndarray
    pixel_mm: float
    findings: list[Finding]
    labels: dict[str, int]
    ctr: float
    marker: dict | None = None
    seed: int = 0

    def finding_masks(self, label: str) -> np.ndarray:
        masks = [f.mask for f in self.findings if f.label == label]
        return np.logical_or.reduce(masks) if masks else np.zeros(self.image.shape, bool)


@dataclass
class _Anatomy:
    body_half_width: float
    body_depth: float
    lung_center_x: float
    lung_center_y: float
    lung_half_width: float
    lung_half_height: float
    lung_depth: float
    diaphragm_y: float
    dome_height: float
    heart_x: float
    heart_y: float
    heart_half_width: float
    heart_half_height: float
    shift_x: float
    female: bool
    rib_start_y: float
    rib_spacing: float


def _sample_anatomy(rng: np.random.Generator) -> _Anatomy:
    body = rng.uniform(145, 172)
    lung_hw = rng.uniform(60, 72) * body / 160
    return _Anatomy(
        body_half_width=body,
        body_depth=rng.uniform(95, 120),
        lung_center_x=rng.uniform(68, 78) * body / 160,
        lung_center_y=rng.uniform(-55, -40),
        lung_half_width=lung_hw,
        lung_half_height=rng.uniform(125, 140),
        lung_depth=rng.uniform(75, 90),
        diaphragm_y=rng.uniform(55, 85),
        dome_height=rng.uniform(18, 30),
        heart_x=rng.uniform(0.35, 0.5),  # fraction of the heart's half-width left of the midline
        heart_y=rng.uniform(20, 35),
        heart_half_width=0.0,  # set from the cardiothoracic ratio
        heart_half_height=rng.uniform(50, 60),
        shift_x=rng.uniform(-8, 8),
        female=bool(rng.random() < 0.5),
        rib_start_y=rng.uniform(-165, -150),
        rib_spacing=rng.uniform(20, 24),
    )


def render_chest(
    seed: int,
    size: int = 1024,
    *,
    findings: dict[str, bool] | None = None,
    prevalence: float = 0.3,
    shortcut: bool = False,
    shortcut_label: str = "pneumothorax",
    marker_probability: float = 0.5,
) -> ChestCase:
    """Render one radiograph at ``size`` x ``size`` pixels, deterministically for ``seed``.

    ``findings`` forces which labels are present; otherwise each is drawn with ``prevalence``.
    With ``shortcut``, a burned-in text marker appears on 95 % of images positive for
    ``shortcut_label`` and 5 % of the others (a Clever Hans cue); without it, a laterality
    marker appears at random, independent of the labels.
    """
    rng = np.random.default_rng(seed)
    anatomy = _sample_anatomy(rng)
    present = {label: bool(rng.random() < prevalence) for label in CHEST_LABELS}
    if findings is not None:
        present = {label: bool(findings.get(label, False)) for label in CHEST_LABELS}

    pixel = FIELD_MM / size
    coords = (np.arange(size, dtype=np.float32) + 0.5) * pixel - FIELD_MM / 2
    x = coords[None, :] - anatomy.shift_x
    y = coords[:, None]
    x, y = np.broadcast_to(x, (size, size)), np.broadcast_to(y, (size, size))

    # The patient's right is on the image left (PA view): side -1 = right, +1 = left.
    thorax_inner = anatomy.body_half_width - 12
    ctr = rng.uniform(0.52, 0.64) if present["cardiomegaly"] else rng.uniform(0.38, 0.47)
    anatomy.heart_half_width = ctr * thorax_inner  # heart width / inner thoracic width = CTR
    anatomy.heart_x *= anatomy.heart_half_width

    body = _body(x, y, anatomy)
    lungs, lung_geom = _lungs(x, y, anatomy)
    heart = ellipsoid_path(
        x,
        y,
        (anatomy.heart_x, anatomy.heart_y),
        (anatomy.heart_half_width, anatomy.heart_half_height, 62),
        2.2,
    )
    # Hilar shadows: pulmonary arteries and veins where the vessel trees start.
    hila = sum(ellipsoid_path(x, y, (side * 48, -28), (14, 26, 30)) for side in (-1, 1))
    # The heart occupies depth the lungs would otherwise have.
    for side in (-1, 1):
        lungs[side] = np.clip(lungs[side] - 1.5 * heart, 0.0, None)
    lungs = {side: _mediastinum_cut(x, y, path) for side, path in lungs.items()}

    found: list[Finding] = []
    vessels_keep = np.ones((size, size), np.float32)
    extra = np.zeros((size, size), np.float32)  # soft-tissue density added by findings
    lung_gain = {-1: np.ones((size, size), np.float32), 1: np.ones((size, size), np.float32)}

    if present["pneumothorax"]:
        side = int(rng.choice([-1, 1]))
        region, line = _pneumothorax(x, y, lung_geom[side], rng)
        region &= lungs[side] > 1.0
        # Collapsed parenchyma is replaced by air: less attenuation, and no vessels beyond the line.
        lung_gain[side] = np.where(region, 1.0 / (1.0 - _LUNG), lung_gain[side]).astype(np.float32)
        vessels_keep *= ~region
        extra += line
        found.append(Finding("pneumothorax", region, _side_name(side)))
    if present["effusion"]:
        side = int(rng.choice([-1, 1]))
        fluid = _effusion(x, y, lung_geom[side], rng)
        fluid_mask = (fluid > 0.5) & (lungs[side] > 1.0)
        extra += (1 - _LUNG) * lungs[side] * fluid
        vessels_keep *= 1 - fluid
        found.append(Finding("effusion", fluid_mask, _side_name(side)))
    if present["consolidation"]:
        side = int(rng.choice([-1, 1]))
        blob = _consolidation(x, y, lung_geom[side], rng, pixel)
        blob *= lungs[side] > 1.0
        texture = 0.93 + 0.07 * smooth_noise((size, size), 3.0 / pixel, rng)
        extra += (1 - _LUNG) * 0.42 * lungs[side] * blob * texture
        found.append(Finding("consolidation", blob > 0.5, _side_name(side)))
    if present["nodule"]:
        for _ in range(int(rng.integers(1, 3))):
            side = int(rng.choice([-1, 1]))
            center, radius = _nodule_site(x, y, lungs[side], rng)
            d = np.hypot(x - center[0], y - center[1])
            # A solid nodule: soft tissue replacing aerated lung (a sphere's chord equals a cylinder's).
            extra += 1.2 * tube_path(d, radius)
            found.append(Finding("nodule", d <= radius, _side_name(side), {"radius_mm": radius}))
    if present["cardiomegaly"]:
        found.append(Finding("cardiomegaly", heart > 1.0, "", {"ctr": ctr}))

    vessels = (_vessels(size, rng, pixel) + 0.3 * hila) * vessels_keep
    total_lung = sum(lungs[s] * lung_gain[s] for s in (-1, 1))
    vessels *= smoothstep(total_lung / 20.0)
    # Parenchymal texture: faint mottle where there is aerated lung.
    vessels += (
        2.0 * smooth_noise((size, size), 1.5 / pixel, rng) * smoothstep(total_lung / 40.0) * vessels_keep
    )
    # Soft tissue fills the body; lungs replace part of it with air-filled parenchyma.
    projection = (
        body - (1 - _LUNG) * total_lung + _bones(x, y, anatomy, rng) + _airways(x, y) + vessels + extra
    )
    image = _expose(projection, rng, pixel)

    marker = None
    if shortcut:
        show = rng.random() < (0.95 if present[shortcut_label] else 0.05)
        text = "PORTABLE"
    else:
        show = rng.random() < marker_probability
        text = str(rng.choice(["R", "L"]))
    if show:
        marker = _burn_marker(image, text, rng, pixel)

    labels = {label: int(any(f.label == label for f in found)) for label in CHEST_LABELS}
    return ChestCase(image, pixel, found, labels, float(ctr), marker, seed)


def _side_name(side: int) -> str:
    return "right" if side < 0 else "left"


def _body(x: np.ndarray, y: np.ndarray, a: _Anatomy) -> np.ndarray:
    """Soft tissue: neck, shoulders and arms, chest wall, abdomen; breasts for some patients."""
    neck = 58.0
    shoulders = a.body_half_width + 22
    # Neck widening smoothly into the shoulders, then the chest wall narrowing to the waist.
    half = neck + (shoulders - neck) * smoothstep((y + 190) / 45)
    half = half - 22 * smoothstep((y + 120) / 60) - 12 * smoothstep((y - 60) / 120)
    depth = 60 + (a.body_depth - 60) * smoothstep((y + 185) / 50)
    path = 2 * depth * np.sqrt(np.clip(1 - (x / half) ** 2, 0, None))
    for side in (-1, 1):  # upper arms beside the chest, mostly outside the field
        path = path + 0.8 * ellipsoid_path(x, y, (side * (shoulders + 38), -20), (34, 300, 38))
    if a.female:
        for side in (-1, 1):
            path = path + 0.9 * ellipsoid_path(x, y, (side * 85, 95), (75, 55, 45), 2.0)
    return path.astype(np.float32)


def _lungs(x: np.ndarray, y: np.ndarray, a: _Anatomy):
    paths, geom = {}, {}
    for side in (-1, 1):
        cx = side * a.lung_center_x
        # The right hemidiaphragm (image left) sits higher.
        base = a.diaphragm_y - (12 if side < 0 else 0)
        t = np.clip((side * x - (a.lung_center_x - a.lung_half_width)) / (2 * a.lung_half_width), 0, 1)
        dome = base - a.dome_height * (1 - ((t - 0.35) / 0.65) ** 2)
        path = ellipsoid_path(
            x, y, (cx, a.lung_center_y), (a.lung_half_width, a.lung_half_height, a.lung_depth), 2.6
        )
        path = path * smoothstep((dome - y) / 4.0)
        paths[side] = path.astype(np.float32)
        geom[side] = {
            "cx": cx,
            "cy": a.lung_center_y,
            "hw": a.lung_half_width,
            "hh": a.lung_half_height,
            "dome": dome,
            "side": side,
        }
    return paths, geom


def _mediastinum_cut(x: np.ndarray, y: np.ndarray, path: np.ndarray) -> np.ndarray:
    """No lung in the upper mediastinum band; the aortic knob bulges into the left lung."""
    band = 1 - smoothstep((34 - np.abs(x - 4)) / 12) * smoothstep((-15 - y) / 30)
    knob = ellipsoid_path(x, y, (36, -72), (24, 22, 40))
    return (path * band - 0.8 * knob).clip(0).astype(np.float32)


def _bones(x: np.ndarray, y: np.ndarray, a: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    bone = np.zeros(x.shape, np.float32)
    # Spine: vertebral bodies with faint disc spaces, pedicles; mostly hidden by the mediastinum.
    level = (y + 215) / 26.0
    disc = 0.75 + 0.25 * smoothstep((np.abs(level - np.round(level)) - 0.1) / 0.08)
    bone += 0.32 * _BONE * ellipsoid_path(x, y, (0, 0), (21, 1e6, 14)) * disc
    for side in (-1, 1):
        pedicle_y = (np.round(level) - 0.3) * 26 - 215
        d = np.hypot((x - side * 14) / 5.0, (y - pedicle_y) / 7.0) * 5.0
        bone += 0.35 * _BONE * tube_path(d, 5.0, 1.5)
    # Ribs: posterior arcs from the spine, anterior arcs from the side wall down to the sternum.
    lateral = a.body_half_width - 14
    for k in range(11):
        y0 = a.rib_start_y + k * a.rib_spacing + rng.normal(0, 1.5)
        for side in (-1, 1):
            span = lateral - 22 - max(0, 4 - k) * 14
            xs = np.linspace(22, 22 + span, 64)
            s = (xs - 22) / span
            ys = y0 - 18 * s + 62 * s**2 + rng.normal(0, 1)
            d = curve_distance(side * x, y, xs, ys)
            bone += 0.8 * _BONE * tube_path(d, 5.5 + 0.15 * k, 1.6)
            # Anterior rib: from the lateral end, sloping down towards the sternum.
            if k < 9:
                xa = np.linspace(55, 22 + span, 48)
                sa = (22 + span - xa) / (span - 33)
                ya = ys[-1] + 4 + 75 * sa - 10 * sa**2
                da = curve_distance(side * x, y, xa, ya)
                bone += 0.45 * _BONE * tube_path(da, 6.0, 1.0)
    # Clavicles: S-shaped, from the sternal notch up and out to the shoulders.
    for side in (-1, 1):
        xs = np.linspace(18, 150, 64)
        s = (xs - 18) / 132
        ys = -148 - 22 * s + 10 * np.sin(np.pi * s * 1.6)
        bone += 1.1 * _BONE * tube_path(curve_distance(side * x, y, xs, ys), 8.0, 2.5)
        # Scapula (a thin plate beside the upper chest) and the humeral head.
        bone += 0.35 * _BONE * ellipsoid_path(side * x, y, (a.body_half_width - 10, -95), (32, 70, 4))
        head = ellipsoid_path(side * x, y, (a.body_half_width + 38, -150), (27, 27, 27))
        bone += 0.55 * _BONE * head
    return bone


def _airways(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trachea and main bronchi: air columns, darker than the mediastinum around them."""
    carina = -70.0
    trachea = np.where(y < carina, tube_path(np.abs(x + 3), 9.0), 0.0)
    air = trachea.astype(np.float32)
    for side, angle in ((-1, 0.45), (1, 0.75)):
        length = np.clip((y - carina) / np.cos(angle), 0, 45)
        cx = -3 + side * np.tan(angle) * (y - carina)
        bronchus = np.where(
            (y >= carina) & (length < 45), tube_path(np.abs(x - cx) * np.cos(angle), 6.0), 0.0
        )
        air += bronchus.astype(np.float32)
    return -air


def _vessels(size: int, rng: np.random.Generator, pixel: float) -> np.ndarray:
    """Lung markings: vessel trees branching out from each hilum, thinner towards the periphery."""
    levels: dict[int, np.ndarray] = {}
    for side in (-1, 1):
        hilum = (side * 45.0, -25.0)
        stack = [(hilum[0], hilum[1], float(angle), 4.5, 0) for angle in _hilar_angles(side, rng)]
        while stack:
            x0, y0, angle, width, depth = stack.pop()
            length = rng.uniform(22, 34) * 0.85**depth
            x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
            grid = levels.setdefault(depth, np.zeros((size, size), np.float32))
            n = max(2, int(length / (pixel * 0.7)))
            px = ((np.linspace(x0, x1, n) + FIELD_MM / 2) / pixel).astype(int)
            py = ((np.linspace(y0, y1, n) + FIELD_MM / 2) / pixel).astype(int)
            ok = (px >= 0) & (px < size) & (py >= 0) & (py < size)
            # Samples 0.7 px apart, blurred by sigma: the peak path equals the vessel diameter.
            sigma_px = max(width / 2.5, 0.5) / pixel
            np.add.at(grid, (py[ok], px[ok]), width * np.sqrt(2 * np.pi) * sigma_px * 0.7)
            if width > 0.9 and depth < 7:
                for turn in (-1, 1):
                    stack.append((x1, y1, angle + turn * rng.uniform(0.25, 0.6), width * 0.74, depth + 1))
    out = np.zeros((size, size), np.float32)
    for depth, grid in levels.items():
        width = 4.5 * 0.74**depth
        # x3: a radiograph superimposes vessels from the whole lung depth; the tree is one layer.
        out += gaussian_blur(grid, max(width / 2.5, 0.5) / pixel) * 3 * (1 - _LUNG)
    return out


def _hilar_angles(side: int, rng: np.random.Generator) -> list[float]:
    # Angles in image coordinates (y down): up-and-out, out, down-and-out, down.
    base = [-1.9, -1.2, -0.3, 0.6, 1.2] if side > 0 else [-1.25, -1.9, 2.85, 2.55, 1.95]
    return [b + rng.normal(0, 0.12) for b in base]


def _pneumothorax(x, y, geom: dict, rng: np.random.Generator):
    """Air between chest wall and a retracted lung at the apex and lateral wall, and the pleural line."""
    gap = rng.uniform(8, 28)
    u = (x - geom["cx"]) / geom["hw"]
    v = (y - geom["cy"]) / geom["hh"]
    q = np.sqrt(np.abs(u) ** 2.6 + np.abs(v) ** 2.6)
    q_line = 1 - gap / geom["hw"]
    # Apical and lateral: above the mid-lung, or towards the outer wall.
    sector = (v < 0.15) | (u * geom["side"] > 0.3)
    region = (q > q_line) & (q < 1.0) & sector & (y < geom["dome"] - 15)
    distance = np.abs(q - q_line) * geom["hw"]
    line = np.where(sector & (q < 1.0) & (y < geom["dome"] - 15), np.exp(-((distance / 0.6) ** 2)), 0) * 3.0
    return region, line.astype(np.float32)


def _effusion(x, y, geom: dict, rng: np.random.Generator) -> np.ndarray:
    """Fluid at the lung base: the costophrenic angle blunted, a meniscus climbing the lateral wall."""
    height = rng.uniform(12, 45)
    lateral = np.clip((x - geom["cx"]) * geom["side"] / geom["hw"] + 0.3, 0, 1.3)
    level = geom["dome"] - height - 40 * lateral**2.5
    return smoothstep((y - level) / 5.0).astype(np.float32)


def _consolidation(x, y, geom: dict, rng: np.random.Generator, pixel: float) -> np.ndarray:
    """A fluffy airspace opacity: overlapping lobules with an ill-defined, irregular edge."""
    cx = geom["cx"] + geom["side"] * rng.uniform(-0.15, 0.4) * geom["hw"]
    cy = geom["cy"] + rng.uniform(-0.2, 0.5) * geom["hh"]
    field_ = np.zeros(x.shape, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        ox, oy = rng.normal(0, 12, 2)
        sx, sy = rng.uniform(16, 28, 2)
        field_ += np.exp(-(((x - cx - ox) / sx) ** 2 + ((y - cy - oy) / sy) ** 2))
    field_ = np.clip(field_, 0, 1.5)
    # Low-frequency irregularity only near the edge, so no islands form away from the opacity.
    field_ += 0.12 * smooth_noise(x.shape, 7.0 / pixel, rng) * (field_ > 0.2)
    return smoothstep((field_ - 0.2) / 0.75).astype(np.float32)


def _nodule_site(x, y, lung: np.ndarray, rng: np.random.Generator):
    candidates = np.argwhere(lung > 0.7 * lung.max())
    row, col = candidates[rng.integers(len(candidates))]
    radius = float(rng.uniform(8, 16))
    return (float(x[row, col]), float(y[row, col])), radius


def _expose(projection: np.ndarray, rng: np.random.Generator, pixel: float) -> np.ndarray:
    """Projection -> detector signal with quantum noise -> log -> processed display image in [0, 1]."""
    mu = _MU_WATER * rng.uniform(0.9, 1.1)
    signal = np.exp(-mu * projection.astype(np.float64))
    # Photons per pixel scale with its area, so noise is consistent at any rendering size.
    photons = rng.uniform(600, 1500) * (pixel / 0.2) ** 2
    noisy = signal + rng.standard_normal(signal.shape) * np.sqrt(signal / photons)
    attenuation = -np.log(np.clip(noisy, 1e-6, None))
    attenuation = gaussian_blur(attenuation.astype(np.float32), 0.25 / pixel)
    # Processing as DX systems do: normalise, compress the dynamic range (a large-kernel base
    # turned down) and boost local detail, so vessels and ribs show in both lungs and mediastinum.
    low, high = np.percentile(attenuation[::4, ::4], [1, 99.7])
    image = np.clip((attenuation - low) / (high - low), 0, 1)
    base = gaussian_blur(image, 14.0 / pixel)
    fine = gaussian_blur(image, 0.35 / pixel)
    image = 0.62 * base + rng.uniform(2.2, 3.0) * (fine - base) + 0.45 * (image - fine)
    low, high = np.percentile(image[::4, ::4], [0.5, 99.8])
    image = np.clip((image - low) / (high - low), 0, 1)
    gamma = rng.uniform(0.85, 1.15)
    return (image**gamma).astype(np.float32)


def _burn_marker(image: np.ndarray, text: str, rng: np.random.Generator, pixel: float) -> dict:
    """Burn a bright text marker into a top corner, as a technologist's lead marker shows up."""
    mask = text_mask(text, int(16 / pixel))
    h, w = mask.shape
    size = image.shape[0]
    margin = int(12 / pixel)
    left = margin if rng.random() < 0.5 else size - w - margin
    top = margin + int(rng.uniform(0, 30) / pixel)
    image[top : top + h, left : left + w][mask] = 1.0
    return {"text": text, "bbox": [left, top, w, h]}
