"""Discovery offers the annotation files it finds beside the images; a truncated file's message
counts what the file holds against what its header declares."""

from __future__ import annotations

import zipfile

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.io.errors import LoadError
from viewer.resources import resources_root

CHEST = resources_root() / "samples" / "dicom" / "cxr_0002.dcm"
BOXES = "Image Index,Finding Label,Bbox [x,y,w,h],,,\nfilm.png,Cardiomegaly,1,2,3,4,,,\n"


def test_a_box_csv_beside_the_films_is_an_annotation_and_other_files_stay_problems(tmp_path):
    PILImage.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "film.png")
    (tmp_path / "BBox_List_2017.csv").write_text(BOXES)
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\nfilm.png,Cardiomegaly\n")
    (tmp_path / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        z.writestr("BBox_List_2017.csv", BOXES)  # in an archive: not read as an annotation
    found = discover([tmp_path])
    assert len(found.series) == 1
    assert found.annotations == [str(tmp_path / "BBox_List_2017.csv")]
    problems = sorted(p.path.rsplit("/", 1)[-1] for p in found.problems)
    assert problems == ["BBox_List_2017.csv", "Data_Entry_2017.csv", "notes.txt"]  # the zip's, the labels
    again = found + discover([tmp_path / "BBox_List_2017.csv"])
    assert again.annotations == found.annotations


def test_a_truncated_file_says_how_many_of_the_declared_values_it_holds(tmp_path):
    ds = pydicom.dcmread(CHEST)
    ds.decompress()
    ds.save_as(tmp_path / "whole.dcm")
    data = (tmp_path / "whole.dcm").read_bytes()
    start = len(data) - 1024 * 1024 * 2
    (tmp_path / "cut.dcm").write_bytes(data[: start + 2 * 654_321])  # past the first block of rows
    with pytest.raises(LoadError) as error:
        load_series(discover([tmp_path / "cut.dcm"]).series[0])
    assert error.value.reason == (
        "pixel data truncated: the file holds 654,321 of the 1,048,576 values its header declares"
    )
