"""Write phantom studies to disk: DICOM images, and their ground truth as DICOM SEG and JSON + PNG masks.

Layout under ``out``::

    dicom/cxr_0001.dcm                  a radiograph (DX or CR, MONOCHROME1 or 2, 12-16 bit)
    dicom/ct_0001/CT0001.dcm ...        a head CT series
    annotations/cxr_0001.json           labels, findings (bbox, mask file, side), marker, CTR
    annotations/cxr_0001_nodule_1.png   one mask per finding (and per slice for CT)
    annotations/cxr_0001_seg.dcm        DICOM Segmentation referencing the source images
    labels.csv                          one row per study: file and 0/1 per label

Annotations live outside ``dicom/`` so opening that folder shows only the images.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from viewer import __version__
from viewer.io.dicom_derived import complete_conditional, projection_measures
from viewer.io.dicom_writer import StudyInfo, make_uid, write_atomic, write_ct_series, write_radiograph
from viewer.io.drawn_shapes import bbox_of
from viewer.io.safe_text import csv_writer
from viewer.phantoms.chest import CHEST_LABELS, ChestCase, render_chest
from viewer.phantoms.head_ct import CT_LABELS, HeadCase, render_head_ct

GROUND_TRUTH_FORMAT = "saliency-viewer-ground-truth/1"

# SNOMED CT codes for the segments (highdicom's dictionary where it has them).
_PROPERTY = {
    "nodule": codes.SCT.Nodule,
    "consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "effusion": codes.SCT.PleuralEffusion,
    "cardiomegaly": codes.SCT.Cardiomegaly,
    "pneumothorax": codes.SCT.Pneumothorax,
    "subdural": Code("35486000", "SCT", "Subdural hemorrhage"),
    "subarachnoid": Code("21454007", "SCT", "Subarachnoid hemorrhage"),
}


def _study_date(seed: int) -> str:
    """A date derived from the seed, so the same seed writes byte-identical files on any day."""
    return (datetime.date(2024, 1, 1) + datetime.timedelta(days=seed % 730)).strftime("%Y%m%d")


def _phantom_study(name: str, part: str, description: str, seed: int) -> StudyInfo:
    """Patient and study fields of a phantom: obviously synthetic names, a date from the seed."""
    return StudyInfo(
        patient_name=f"Phantom^{part}{name[-4:]}",
        patient_id=f"PH-{name.upper()}",
        study_description=description,
        study_date=_study_date(seed),
        seed=seed,
    )


def case_seed(seed: int, index: int) -> int:
    """The seed of study ``index`` in a set generated with ``seed`` (stable across versions)."""
    return seed * 100_003 + index


def write_chest_set(
    out: Path, n: int, seed: int, *, size: int = 1024, shortcut: bool = False, compress: str | None = None
) -> list[dict]:
    """Render and write ``n`` radiographs with their ground truth; returns the JSON records."""
    records = []
    for i in range(n):
        s = case_seed(seed, i)
        case = render_chest(s, size, shortcut=shortcut)
        rng = np.random.default_rng(s + 1)
        records.append(write_chest_study(case, Path(out), f"cxr_{i + 1:04d}", rng, compress=compress))
    write_labels_csv(Path(out) / "labels.csv", records, CHEST_LABELS)
    return records


def write_ct_set(
    out: Path,
    n: int,
    seed: int,
    *,
    size: int = 512,
    slices: int = 28,
    shortcut: bool = False,
    compress: str | None = None,
) -> list[dict]:
    """Render and write ``n`` head CT series with their ground truth; returns the JSON records."""
    records = []
    for i in range(n):
        s = case_seed(seed, i)
        case = render_head_ct(s, size, slices=slices, shortcut=shortcut)
        records.append(write_head_study(case, Path(out), f"ct_{i + 1:04d}", compress=compress))
    write_labels_csv(Path(out) / "labels.csv", records, CT_LABELS)
    return records


def write_chest_study(
    case: ChestCase, out: Path, name: str, rng: np.random.Generator, compress: str | None = None
) -> dict:
    """Write one radiograph as DX or CR with varied photometric and depth, plus its ground truth."""
    modality = "DX" if rng.random() < 0.5 else "CR"
    photometric = "MONOCHROME1" if rng.random() < 0.5 else "MONOCHROME2"
    bits = int(rng.choice([12, 14, 15, 16]))
    top = (1 << bits) - 1
    detector_mm = case.pixel_mm
    magnification = 1.1
    study = _phantom_study(name, "Chest", "Chest PA (phantom)", case.seed)
    image_path = write_radiograph(
        case.image,
        out / "dicom" / f"{name}.dcm",
        modality=modality,
        photometric=photometric,
        bits_stored=bits,
        # CR plates record only the detector spacing; DX systems also give a calibrated one.
        pixel_spacing=(detector_mm / magnification,) * 2 if modality == "DX" else None,
        imager_pixel_spacing=(detector_mm,) * 2,
        window=(top / 2, top + 1),
        study=study,
        series_description="Chest PA",
        compress=compress,
    )
    source = pydicom.dcmread(image_path)
    findings = []
    counts: dict[str, int] = {}
    for finding in case.findings:
        counts[finding.label] = counts.get(finding.label, 0) + 1
        mask_name = f"{name}_{finding.label}_{counts[finding.label]}.png"
        _write_mask(finding.mask, out / "annotations" / mask_name)
        entry = {
            "label": finding.label,
            "side": finding.side,
            "slices": [_slice_entry(0, source.SOPInstanceUID, finding.mask, f"annotations/{mask_name}")],
        }
        entry.update(finding.detail)
        findings.append(entry)
    marker = None
    if case.marker is not None:
        marker = dict(case.marker)
    seg_name = _write_seg(
        [source],
        {label: case.finding_masks(label)[None] for label in CHEST_LABELS if case.labels[label]},
        out / "annotations" / f"{name}_seg.dcm",
    )
    record = {
        "format": GROUND_TRUTH_FORMAT,
        "kind": "cxr",
        "name": name,
        "seed": case.seed,
        "study_uid": str(source.StudyInstanceUID),
        "series_uid": str(source.SeriesInstanceUID),
        "path": f"dicom/{name}.dcm",
        "images": [{"file": f"dicom/{name}.dcm", "sop_instance_uid": str(source.SOPInstanceUID)}],
        "rows": int(source.Rows),
        "columns": int(source.Columns),
        "labels": case.labels,
        "findings": findings,
        "marker": marker,
        "cardiothoracic_ratio": round(case.ctr, 3),
        "seg": f"annotations/{seg_name}" if seg_name else None,
    }
    _write_json(record, out / "annotations" / f"{name}.json")
    return record


def write_head_study(case: HeadCase, out: Path, name: str, compress: str | None = None) -> dict:
    """Write one head CT series and its ground truth (masks per slice)."""
    study = _phantom_study(name, "Head", "CT head without contrast (phantom)", case.seed)
    rows = case.hu.shape[1]
    origin = (-rows * case.pixel_mm / 2, -rows * case.pixel_mm / 2, -40.0)
    paths = write_ct_series(
        case.hu,
        out / "dicom" / name,
        spacing=(case.slice_mm, case.pixel_mm, case.pixel_mm),
        origin=origin,
        study=study,
        series_description="Head CT 5mm",
        window=(40.0, 80.0),
        compress=compress,
    )
    sources = [pydicom.dcmread(p, stop_before_pixels=False) for p in paths]
    findings = []
    for finding in case.findings:
        slices = []
        for k, mask in sorted(finding.masks.items()):
            mask_name = f"{name}_{finding.label}_s{k:03d}.png"
            _write_mask(mask, out / "annotations" / mask_name)
            slices.append(_slice_entry(k, sources[k].SOPInstanceUID, mask, f"annotations/{mask_name}"))
        findings.append({"label": finding.label, "slices": slices})
    volumes = {}
    for label in CT_LABELS[1:]:
        masks = [f for f in case.findings if f.label == label]
        if masks:
            volume = np.zeros(case.hu.shape, bool)
            for k, mask in masks[0].masks.items():
                volume[k] = mask
            volumes[label] = volume
    seg_name = _write_seg(sources, volumes, out / "annotations" / f"{name}_seg.dcm")
    record = {
        "format": GROUND_TRUTH_FORMAT,
        "kind": "ct",
        "name": name,
        "seed": case.seed,
        "study_uid": str(sources[0].StudyInstanceUID),
        "series_uid": str(sources[0].SeriesInstanceUID),
        "path": f"dicom/{name}",
        "images": [
            {"file": f"dicom/{name}/{p.name}", "sop_instance_uid": str(ds.SOPInstanceUID)}
            for p, ds in zip(paths, sources, strict=True)
        ],
        "rows": rows,
        "columns": int(case.hu.shape[2]),
        "labels": case.labels,
        "slice_labels": {
            label: case.slice_labels[:, i].astype(int).tolist() for i, label in enumerate(CT_LABELS)
        },
        "findings": findings,
        "marker": case.marker,
        "seg": f"annotations/{seg_name}" if seg_name else None,
    }
    _write_json(record, out / "annotations" / f"{name}.json")
    return record


def _slice_entry(index: int, sop_uid: str, mask: np.ndarray, mask_file: str) -> dict:
    return {
        "index": index,
        "sop_instance_uid": str(sop_uid),
        "bbox": bbox_of(mask),
        "area_px": int(mask.sum()),
        "mask": mask_file,
    }


def _write_seg(sources: list[pydicom.Dataset], volumes: dict[str, np.ndarray], path: Path) -> str | None:
    """A BINARY DICOM Segmentation with one segment per label, referencing ``sources``."""
    if not volumes:
        return None
    labels = list(volumes)
    pixels = np.stack([volumes[label] for label in labels], axis=-1).astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=_PROPERTY.get(label, codes.SCT.Hemorrhage),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="Saliency Viewer phantom ground truth",
                version=__version__,
                family=codes.DCM.ImageProcessing,
            ),
        )
        for i, label in enumerate(labels)
    ]
    series_uid = make_uid("seg", sources[0].SeriesInstanceUID)
    first = sources[0]
    measures = None if "ImagePositionPatient" in first else projection_measures(first)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=100,
        sop_instance_uid=make_uid("seg-instance", series_uid),
        instance_number=1,
        manufacturer="Saliency Viewer",
        manufacturer_model_name="phantom",
        software_versions=__version__,
        device_serial_number="0",
        series_description="Ground truth (phantom)",
        pixel_measures=measures,
    )
    _pin_generated_values(seg, first, series_uid)
    complete_conditional(seg, first)
    write_atomic(seg, path)
    return path.name


def _pin_generated_values(seg: pydicom.Dataset, source: pydicom.Dataset, series_uid: str) -> None:
    """highdicom stamps creation times and a random dimension UID; pin them so that the same seed
    gives byte-identical files (the content is fully determined by the seed anyway)."""
    date, time = str(source.StudyDate), "120000"
    seg.InstanceCreationDate = seg.ContentDate = seg.SeriesDate = date
    seg.InstanceCreationTime = seg.ContentTime = seg.SeriesTime = time
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    dimension_uid = make_uid("dimension", series_uid)
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(keyword, []):
            item.DimensionOrganizationUID = dimension_uid


def _write_mask(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    tmp = path.with_name(f".partial-{path.name}")
    PILImage.fromarray(mask.astype(np.uint8) * 255).convert("1").save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_json(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    tmp = path.with_name(f".partial-{path.name}")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def write_labels_csv(path: Path, records: list[dict], labels: tuple[str, ...]) -> None:
    """Append one row per study (name, path, 0/1 per label) to a CSV, with a header when new."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv_writer(f)  # the product's one CSV writer: no cell a spreadsheet runs
        if new:
            writer.writerow(["name", "file", *labels])
        for record in records:
            writer.writerow([record["name"], record["path"], *(record["labels"][label] for label in labels)])
