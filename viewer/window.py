"""``viewer.Viewer``, ``viewer.show`` and ``viewer.run``: the desktop window opened from a script or
IPython, on a network and images the caller holds in memory (napari's ``Viewer`` / ``run``).

This module composes the public API's readings of what a user passes (:mod:`viewer.api.sources`:
arrays, tensors, PIL images, paths, datasets) with the window (:mod:`viewer.ui`); it sits above
both in the layering, beside ``viewer.launch``, and touches Qt only through
:mod:`viewer.ui.notebook_window`.

The network: the window runs it on its worker thread while the notebook goes on, so it works on
a **copy** taken when the network is handed over (``copy.deepcopy``, in eval mode). The user's
module is never touched, and a training loop in the notebook cannot race the window's forward
passes; hand the network over again (:meth:`Viewer.add_network`) to see the weights as they are
later: it is listed as another model, with maps of its own. It is listed as
``"<Class> (in memory)"``; the session holds it in its model store, so predictions and every
method run exactly as for a model file, and nothing is read, trusted or remembered from disk
for it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from viewer.api.sources import (
    ImageLike,
    InputError,
    NetworkInput,
    input_spec,
    is_array,
    network_input,
    open_image,
)
from viewer.inference.in_memory import NetworkError, first_in_channels, layer_name, model_from_network
from viewer.inference.manifest import InputSpec, Task
from viewer.io import Image
from viewer.io.discovery import Discovery
from viewer.io.formats.memory import memory_series
from viewer.state.layers import display_indices
from viewer.state.tasks import thumbnail_of
from viewer.ui import notebook_window
from viewer.ui.app import select_model

_DEFAULT_TIMEOUT_S = 300.0


@dataclasses.dataclass
class _Held:
    """An image this window opened from memory, and the network input it stands for (if any)."""

    image: Image
    given: NetworkInput | None = None
    name: str = ""  # in the study browser


class Viewer:
    """The viewer's main window on ``network`` (a ``torch.nn.Module``, a bundled model's name or a
    manifest) and ``images`` (an array, tensor, PIL image, path or ``pydicom.Dataset``, or a
    list of them), as :func:`viewer.explain` reads them: with a network in memory and no
    ``preprocess``, an array or tensor is the network's input ``(C, H, W)``.

    Non-blocking: in IPython (``%gui qt``, switched on when missing) the window is live at once;
    a script calls :func:`viewer.run` to hand over to the window until it is closed, or
    :meth:`wait` to let the background work finish. ``settings``: where preferences are kept
    (default: the desktop viewer's own); a network in memory is never written there.
    """

    def __init__(
        self,
        network: nn.Module | str | os.PathLike | None = None,
        *,
        images: ImageLike | Sequence[ImageLike] | None = None,
        annotation: str | os.PathLike | None = None,
        labels: Sequence[str] | None = None,
        preprocess: dict | InputSpec | object | None = None,
        layer: str | nn.Module | None = None,
        title: str | None = None,
        task: Task | None = None,
        settings: Any = None,
        show: bool = True,
    ) -> None:
        notebook_window.application()
        self.window = notebook_window.new_window(settings, title)
        self._preprocess, self._labels, self._task, self._layer = preprocess, labels, task, layer
        self._held: list[_Held] = []
        self._models: list[Any] = []  # the in-memory LoadedModels this window holds
        self._by_class: dict[str, str] = {}  # network class name -> its latest catalog name
        self._waiting: tuple[nn.Module, str | None] | None = None  # a network handed over before any image
        self._queued: list[tuple[Callable[[], None], Image | None]] = []  # waiting for an image on screen
        self._opening = False
        self.session.opening.opened.connect(self._on_opened)
        if network is not None:
            self.add_network(network)
        if images is not None:
            self.open(images)
        if annotation is not None:
            self._when_open(lambda: self.session.annotation.load(Path(annotation)))
        if show:
            notebook_window.present(self.window)

    # --- what scripts read ----------------------------------------------------------------------
    @property
    def session(self):
        """The window's :class:`~viewer.state.session.ViewerSession` (no Qt): what is open, the
        model, its prediction, the maps; every command the window's menus give."""
        return self.window.session

    @property
    def state(self):
        """The :class:`~viewer.state.viewer_state.ViewerState` the window draws: image, slice,
        window/level, ``layers`` (one per method), target, annotation."""
        return self.window.state

    @property
    def model(self) -> str:
        """The name of the model in use, as the model list shows it."""
        return self.state.model

    @property
    def probabilities(self) -> dict[str, float]:
        """Label -> probability on the slice on screen (empty until the prediction is in)."""
        prediction = self.session.model.prediction
        if prediction is None:
            return {}
        row = prediction.probabilities[self.state.frame]
        return {label: float(row[i]) for i, label in enumerate(prediction.labels)}

    # --- commands -------------------------------------------------------------------------------
    def add_network(self, network: nn.Module | str | os.PathLike) -> str:
        """Use ``network`` from now on: a module (a copy of it as it is now, see the module
        docstring), a bundled model's name or a manifest. Its name in the model list; for a
        module handed over before any image, the name it will have once the first image opens
        (its input size is read from that image)."""
        if isinstance(network, str | os.PathLike) and not isinstance(network, nn.Module):
            if not select_model(self.window, str(network)):
                raise InputError(f"{network}: not a bundled model or a manifest")
            return self.model
        if not isinstance(network, nn.Module):
            raise NetworkError(
                f"network must be a torch.nn.Module, a bundled model's name or a manifest, "
                f"not a {type(network).__name__}"
            )
        layer = layer_name(network, self._layer)  # the same dotted name in the copy
        twin = _snapshot(network)
        self.session.model.for_modality = False  # the user's network, whatever the image says
        first = self._held[0] if self._held else None
        if first is None and self._spec_size() is None:
            self._waiting = (twin, layer)
            return self.session.model.catalog.in_memory_name(type(network).__name__)
        return self._hold(twin, layer, first)

    def open(self, images: ImageLike | Sequence[ImageLike]) -> None:
        """Open ``images`` and show the first: paths through the viewer's discovery (folders,
        series, DICOMDIRs), anything else as images in memory, listed in the study browser."""
        items = list(images) if isinstance(images, list | tuple) else [images]
        if not items:
            return
        if all(isinstance(i, str | os.PathLike) for i in items):
            self._opening = True
            self.window.open_paths([str(i) for i in items])
            return
        new = [self._read(item, len(self._held) + i) for i, item in enumerate(items)]
        first = len(self._held)
        self._held.extend(new)
        if self._waiting is not None:
            (twin, layer), self._waiting = self._waiting, None
            self._hold(twin, layer, new[0])
        for held in new:
            self._provide(held)
        series = [memory_series(h.image, h.name) for h in self._held]
        self._opening = True
        self.session.opening.open_found(Discovery(series, []), first)
        # Decoded already: their pictures are made here at once (a file's come from its own job).
        self.session.opening.thumbnails.emit([(i, thumbnail_of(h.image)) for i, h in enumerate(self._held)])

    def run_methods(self, methods: Sequence[str] | str | None = None) -> None:
        """Compute ``methods`` (default: the ticked ones) on the image on screen, for the target,
        in the background; each map appears as a layer as it is done (after the prediction and
        the image being opened, if they are still on their way)."""
        chosen = [methods] if isinstance(methods, str) else list(methods) if methods else None
        if chosen:
            self.window.model_panel.set_checked_methods(chosen)
        self._when_open(lambda: self.window.run_methods(chosen))

    def add_explanation(self, explanation) -> None:
        """Show the maps of a :class:`viewer.Explanation` computed in the notebook as layers:
        on the image they explain (the window's own when it shows the same pixels, else that
        image, opened), under the model that made them, for their target; the window does not
        compute them again."""
        model = self._model_named(explanation.model_name)
        image = next((h.image for h in self._held if _same_pixels(h.image, explanation.image)), None)
        if image is None:
            self.open(explanation.image)
            image = self._held[-1].image

        def put() -> None:
            session, state = self.session, self.state
            if state.model != model:
                session.choose_model(model)
            for smap in explanation.result.maps:
                session.cache.put(id(image), model, smap, display_indices(smap))
            state.target = explanation.targets[0]
            session.layers.rebuild()
            session.explanation.maps_shown.emit()

        self._when_open(put, image)

    def wait(self, timeout: float = _DEFAULT_TIMEOUT_S) -> Viewer:
        """Let the window finish what it was asked (opening, the prediction, the maps), turning
        its event loop meanwhile: for a script without ``run()`` and for tests."""
        notebook_window.wait_until(
            lambda: not self._queued and not self._opening and not self.window.runner.busy,
            timeout,
            "the viewer's background work",
        )
        return self

    def close(self) -> None:
        """Close the window (its preferences saved, its worker stopped)."""
        self.window.close()
        self.window.deleteLater()

    # --- inside ---------------------------------------------------------------------------------
    def _spec_size(self) -> tuple[int, ...] | None:
        spec = self._preprocess
        if isinstance(spec, dict):
            return tuple(spec["size"]) if "size" in spec else None
        return tuple(spec.size) if getattr(spec, "size", None) else None

    def _read(self, item: ImageLike, index: int) -> _Held:
        """An item as the API reads it: the network's input (a module in use, no ``preprocess``,
        an array), or an image; named for the study browser."""
        if is_array(item) and self._preprocess is None and (self._models or self._waiting is not None):
            given = network_input(item)
            return _Held(given.image, given, f"input tensor {index + 1}")
        image = open_image(item)
        kind = "array" if is_array(item) else image.identity.series_description or "image"
        return _Held(image, None, f"{kind} {index + 1}" if kind in ("array", "image") else kind)

    def _hold(self, twin: nn.Module, layer: str | None, first: _Held | None) -> str:
        """List ``twin`` (a copy in eval mode) in the session for inputs shaped as ``first``'s."""
        title = type(twin).__name__
        name = self.session.model.catalog.in_memory_name(title)
        if first is not None and first.given is not None:
            shape = tuple(first.given.tensor.shape)
            model = model_from_network(twin, input_shape=shape, labels=self._labels, task=self._task,
                                       layer=layer, name=name)  # fmt: skip
        else:
            channels = first_in_channels(twin) or (3 if first is not None and first.image.is_color else 1)
            table = self._preprocess
            if first is not None and (table is None or (isinstance(table, dict) and "size" not in table)):
                table = {"size": [first.image.rows, first.image.columns], **(table or {})}
            spec = input_spec(table, channels)
            model = model_from_network(twin, input_shape=(channels, *spec.size), labels=self._labels,
                                       task=self._task, layer=layer, spec=spec, name=name)  # fmt: skip
        model.manifest = dataclasses.replace(
            model.manifest,
            description=f"the {title} object handed to viewer.Viewer in this Python session, copied "
            "when it was handed over (in eval mode); not saved anywhere",
        )
        self._models.append(model)
        for held in self._held:
            self._provide(held)
        self._by_class[title] = name
        self.session.model.hold(model)
        return name

    def _provide(self, held: _Held) -> None:
        if held.given is None:
            return
        for model in self._models:
            if tuple(held.given.tensor.shape) == (model.manifest.in_channels, *model.manifest.input.size):
                tensor = held.given.tensor.to(model.device)
                model.provide(held.image, 0, tensor, held.given.transform, keep=True)

    def _model_named(self, name: str) -> str:
        catalog = self.session.model.catalog
        if name in self._by_class:
            return self._by_class[name]
        if name in catalog.models:
            return name
        raise InputError(
            f"the explanation is of {name}, which this window does not hold: hand the network over "
            "first (viewer.Viewer(network) or add_network(network))"
        )

    def _when_open(self, action: Callable[[], None], image: Image | None = None) -> None:
        """Do ``action`` once ``image`` (default: whatever is being opened) is on screen."""
        if not self._opening and self.state.image is not None and image in (None, self.state.image):
            action()
            return
        self._queued.append((action, image))

    def _on_opened(self, _index: int, image: Image) -> None:
        self._opening = False
        if self._waiting is not None:  # a network waiting for its first image: this one
            (twin, layer), self._waiting = self._waiting, None
            self._hold(twin, layer, _Held(image))
        ready = [(a, i) for a, i in self._queued if i is None or i is image]
        self._queued = [(a, i) for a, i in self._queued if not (i is None or i is image)]
        for action, _ in ready:
            action()


def _snapshot(network: nn.Module) -> nn.Module:
    """A copy of ``network`` for the window's worker, in eval mode, without gradients kept."""
    try:
        twin = copy.deepcopy(network)
    except Exception as exc:  # a module holding something that cannot be copied (a lock, a file)
        raise NetworkError(
            f"{type(network).__name__} cannot be copied for the window (copy.deepcopy: {exc}); the "
            "window runs a copy so that the notebook can go on using the network meanwhile"
        ) from None
    for parameter in twin.parameters():
        parameter.grad = None
    return twin.eval()


def _same_pixels(a: Image, b: Image) -> bool:
    return a is b or (a.pixels.shape == b.pixels.shape and bool((a.pixels == b.pixels).all()))


def show(
    images: ImageLike | Sequence[ImageLike] | None = None,
    network: nn.Module | str | os.PathLike | None = None,
    **options,
) -> Viewer:
    """Open the window on ``images`` with ``network`` (see :class:`Viewer` for ``options``): live
    at once in IPython; a script then calls :func:`run`."""
    return Viewer(network, images=images, **options)


def run() -> None:
    """Hand over to the windows until the last one is closed (a script); returns at once where
    an event loop already turns them (IPython's ``%gui qt``)."""
    notebook_window.run()


__all__ = ["Viewer", "run", "show"]
