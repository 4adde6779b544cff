"""Maps exported from the viewer as DICOM that a PACS can take back."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest

from tests.ui.helpers import CHEST, CT, open_and_wait, run_and_wait
from viewer.io.dicom_export import anonymized_uid
from viewer.ui import exports


def test_radiograph_map_and_secondary_capture_reference_the_source(qtbot, window, tmp_path):
    before = hashlib.sha256(CHEST.read_bytes()).hexdigest()
    image = open_and_wait(qtbot, window, [CHEST])
    run_and_wait(qtbot, window, ["gradcam"])
    ds = pydicom.dcmread(exports.save_dicom(window.export_context(), "pm", tmp_path / "pm.dcm"))
    # A film has no frame of reference: a fractional Segmentation holds the map, to 1/255.
    assert ds.SOPClassUID.name == "Segmentation Storage" and ds.SegmentationType == "FRACTIONAL"
    assert ds.StudyInstanceUID != image.identity.study_uid  # identifiers hidden by default: new UIDs
    values = ds.pixel_array.astype(np.float32) / ds.MaximumFractionalValue
    np.testing.assert_allclose(values, window.state.layer("gradcam").values(0), atol=0.5 / 255 + 1e-6)
    assert "ANONYMOUS" in str(ds.PatientName)
    hidden = pydicom.dcmread(exports.save_dicom(window.export_context(), "sc", tmp_path / "sc_hidden.dcm"))
    assert hidden.BurnedInAnnotation == "NO"  # no name or ID in the corner text
    window.show_phi.setChecked(True)
    sc = exports.save_dicom(window.export_context(), "sc", tmp_path / "sc.dcm")
    ds = pydicom.dcmread(sc)
    assert ds.BurnedInAnnotation == "YES"
    assert ds.StudyInstanceUID == image.identity.study_uid
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == image.frames[0].sop_instance_uid
    with pytest.raises(FileExistsError):
        exports.save_dicom(window.export_context(), "sc", tmp_path / "sc.dcm")
    assert hashlib.sha256(CHEST.read_bytes()).hexdigest() == before


def test_a_ct_slice_map_goes_to_its_slice(qtbot, window, tmp_path):
    image = open_and_wait(qtbot, window, [CT])
    window.state.set_frame(11)
    run_and_wait(qtbot, window, ["gradcam"])
    ds = pydicom.dcmread(exports.save_dicom(window.export_context(), "pm", tmp_path / "pm.dcm"))
    assert ds.SOPClassUID.name == "Parametric Map Storage"
    np.testing.assert_array_equal(ds.pixel_array, window.state.layer("gradcam").values(11))  # exact
    referenced = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    # Identifiers are hidden by default: the reference is the anonymised UID of slice 11.
    assert referenced == anonymized_uid(image.frames[11].sop_instance_uid)
