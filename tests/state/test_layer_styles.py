"""A method's layer style is kept across images of one kind (every radiograph), never carried from
a chest film to a head CT."""

from __future__ import annotations

from viewer.resources import resources_root
from viewer.state import tasks
from viewer.state.layer_book import style_kind
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

SAMPLES = resources_root() / "samples" / "dicom"


def test_a_style_set_on_a_chest_film_stays_on_films_and_not_on_a_ct():
    session = ViewerSession(InlineRunner(), store=tasks.ModelStore())
    session.open_paths([SAMPLES / "cxr_0002.dcm"])
    session.run_methods(["gradcam"])
    layer = session.state.layer("gradcam")
    default = (layer.opacity, layer.colormap)
    layer.opacity, layer.colormap = 0.9, "viridis"

    session.open_paths([SAMPLES / "ct_0001"])
    assert style_kind(session.state.image) == "CT"
    session.run_methods(["gradcam"])
    ct_layer = session.state.layer("gradcam")
    assert (ct_layer.opacity, ct_layer.colormap) == default
    ct_layer.opacity = 0.3  # the CT's own style

    session.open_paths([SAMPLES / "cxr_0001.dcm"])  # another film: the film's style again
    assert style_kind(session.state.image) == "radiograph"
    session.run_methods(["gradcam"])
    film_layer = session.state.layer("gradcam")
    assert (film_layer.opacity, film_layer.colormap) == (0.9, "viridis")

    session.open_paths([SAMPLES / "ct_0001"])
    session.run_methods(["gradcam"])
    assert session.state.layer("gradcam").opacity == 0.3
