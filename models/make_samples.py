"""Write the bundled sample studies into resources/samples (deterministic).

    python models/make_samples.py [--out resources/samples]

Two chest radiographs and one head CT series, JPEG 2000 lossless, each with its ground truth
(JSON + PNG masks + DICOM SEG) under annotations/. The findings are chosen so a first-time user
sees typical cases: a nodule with consolidation, cardiomegaly with an effusion, and a subdural
haematoma with an intraparenchymal bleed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from viewer.phantoms.chest import CHEST_LABELS, render_chest
from viewer.phantoms.head_ct import CT_LABELS, render_head_ct
from viewer.phantoms.studies import write_chest_study, write_head_study, write_labels_csv

ROOT = Path(__file__).resolve().parents[1]
CHEST = [(7001, {"nodule": True, "consolidation": True}), (7002, {"cardiomegaly": True, "effusion": True})]
HEAD = (7101, {"subdural": True, "intraparenchymal": True})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "samples")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)  # regenerated as a whole: samples are outputs of this script
    chest_records = []
    for i, (seed, findings) in enumerate(CHEST):
        case = render_chest(seed, 1024, findings=findings)
        rng = np.random.default_rng(seed + 1)
        chest_records.append(write_chest_study(case, args.out, f"cxr_{i + 1:04d}", rng, compress="j2k"))
    write_labels_csv(args.out / "chest_labels.csv", chest_records, CHEST_LABELS)
    seed, findings = HEAD
    case = render_head_ct(seed, 512, slices=28, findings=findings)
    head_record = write_head_study(case, args.out, "ct_0001", compress="j2k")
    write_labels_csv(args.out / "ct_labels.csv", [head_record], CT_LABELS)
    for record in [*chest_records, head_record]:
        found = [label for label, present in record["labels"].items() if present]
        print(f"{record['path']}: {', '.join(found)}")


if __name__ == "__main__":
    main()
