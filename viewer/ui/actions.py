"""Every menu command of the main window, declared once: id, menu, text, shortcut, handler and
when it is enabled. The window builds its menus from this table, the shortcuts dialog lists it.

A handler is a dotted path from the window (``"session.layers.cycle"``) called with ``args``.
``enabled`` names a condition on the session (see :data:`CONDITIONS`); actions without one are
always enabled. Checkable actions are bound to a boolean preference in ``ui/settings.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from viewer.io.presets import load_presets
from viewer.state.session import ViewerSession

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow

Key = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    id: str
    menu: str  # "file", "edit", "view", "model", "tools", "help"
    text: str
    handler: str = ""  # a dotted path from the window; "" for a checkable action with no handler
    shortcut: str | QKeySequence.StandardKey | None = None
    args: tuple = ()
    tip: str = ""
    enabled: str = ""  # a key of CONDITIONS
    checkable: bool = False
    separator: bool = False  # a separator above the action


CONDITIONS: dict[str, Callable[[ViewerSession], bool]] = {
    "image": lambda s: s.state.image is not None,
    "maps": lambda s: len(s.state.layers) > 0,
    "volume": lambda s: s.state.image is not None and s.state.image.is_volume,
    "dicom": lambda s: s.state.image is not None and s.state.image.kind == "dicom",
    "map_on_dicom": lambda s: len(s.state.layers) > 0 and s.state.image.kind == "dicom",
    "regions": lambda s: s.state.annotation is not None and bool(s.state.annotation.regions),
    "annotation_file": lambda s: bool(s.annotation.book.files),
    "model": lambda s: s.model.manifest_path is not None,
    "model_and_image": lambda s: s.model.manifest_path is not None and s.state.image is not None,
}

A = ActionSpec
ACTIONS: tuple[ActionSpec, ...] = (
    A("open_files", "file", "Open file(s)...", "opening.ask_files", Key.Open),
    A("open_folder", "file", "Open folder...", "opening.ask_folder", "Ctrl+Shift+O"),
    A("open_pacs", "file", "Open from PACS...", "pacs_ui.open_dialog", "Ctrl+Shift+P"),
    A("load_annotation", "file", "Load annotation...", "annotations.ask_load", "Ctrl+L"),
    A(
        "unload_annotation",
        "file",
        "Unload annotation file",
        "session.annotation.unload",
        tip="Forget the loaded annotation files on every image (regions drawn in the viewer stay)",
        enabled="annotation_file",
    ),
    A(
        "save_json",
        "file",
        "Save annotation as JSON...",
        "annotations.ask_save",
        args=("json",),
        enabled="regions",
    ),
    A(
        "save_seg",
        "file",
        "Save annotation as DICOM SEG...",
        "annotations.ask_save",
        args=("seg",),
        enabled="regions",
    ),
    A(
        "export_view",
        "file",
        "Export screenshot of the view...",
        "exporter.ask_export",
        "Ctrl+E",
        ("view",),
        separator=True,
        enabled="image",
    ),
    A(
        "export_native",
        "file",
        "Export image at native resolution...",
        "exporter.ask_export",
        "Ctrl+Shift+E",
        ("native",),
        enabled="image",
    ),
    A(
        "export_sheet",
        "file",
        "Export contact sheet of all methods...",
        "exporter.ask_export",
        args=("sheet",),
        enabled="maps",
    ),
    A(
        "copy_view",
        "file",
        "Copy view to clipboard",
        "exporter.copy_view",
        "Ctrl+Shift+C",
        enabled="image",
    ),
    A(
        "export_pm",
        "file",
        "Export map as DICOM (Parametric Map or Segmentation)...",
        "exporter.ask_export_dicom",
        args=("pm",),
        enabled="map_on_dicom",
    ),
    A(
        "export_sc",
        "file",
        "Export view as DICOM Secondary Capture...",
        "exporter.ask_export_dicom",
        args=("sc",),
        enabled="dicom",
    ),
    A("send_pacs", "file", "Send to PACS...", "pacs_ui.ask_send", enabled="dicom"),
    A("show_phi", "file", "Show patient identifiers in exports", checkable=True),
    A("quit", "file", "Quit", "close", Key.Quit, separator=True),
    A("preferences", "edit", "Preferences...", "help.preferences", Key.Preferences, separator=True),
    A("pacs_nodes", "edit", "PACS nodes...", "pacs_ui.edit_nodes"),
    A("fit", "view", "Fit to window", "canvas.fit", "="),
    A("actual_size", "view", "Actual size (1:1)", "canvas.actual_size", "Ctrl+1"),
    A("zoom_in", "view", "Zoom in", "canvas.zoom_by", "+", (1.25,)),
    A("zoom_out", "view", "Zoom out", "canvas.zoom_by", "-", (0.8,)),
    A("reset_view", "view", "Reset view and window", "view.reset", "R"),
    A("next_slice", "view", "Next slice", "state.step_frame", "Down", (1,), separator=True),
    A("previous_slice", "view", "Previous slice", "state.step_frame", "Up", (-1,)),
    A("next_slice_fast", "view", "Next slice (fast)", "state.step_frame", "PgDown", (5,)),
    A("previous_slice_fast", "view", "Previous slice (fast)", "state.step_frame", "PgUp", (-5,)),
    A("first_slice", "view", "First slice", "state.set_frame", "Home", (0,)),
    A("last_slice", "view", "Last slice", "state.set_frame", "End", (10**9,)),
    A("corners", "view", "Toggle corner text", "view.toggle", "T", ("show_corners",), separator=True),
    A("annotation", "view", "Toggle annotation", "view.toggle", "A", ("show_annotation",)),
    A("fill", "view", "Annotation outline / filled", "view.toggle_fill", "Shift+A"),
    A("toggle_layer", "view", "Toggle selected layer", "session.layers.toggle_active", "V"),
    A("toggle_layers", "view", "Hide or show all layers", "session.layers.toggle_all", "H"),
    A("solo", "view", "Show only the selected layer", shortcut="S", checkable=True),
    A("next_layer", "view", "Next layer", "session.layers.cycle", "Ctrl+Down", (1,)),
    A("previous_layer", "view", "Previous layer", "session.layers.cycle", "Ctrl+Up", (-1,)),
    A("compare", "view", "Comparison panel", "view.toggle_compare", "C"),
    A("mpr", "view", "MPR: axial, coronal and sagittal", "view.toggle_mpr", "M", enabled="volume"),
    A("mpr_mip", "view", "MPR: maps as maximum-intensity projections", shortcut="Shift+M", checkable=True),
    A("cine", "view", "Play / pause cine", "cine.toggle", "Space", enabled="volume", separator=True),
    A("cine_faster", "view", "Cine faster", "cine.faster", "]"),
    A("cine_slower", "view", "Cine slower", "cine.slower", "["),
    A("add_model", "model", "Add model (manifest or weights file)...", "models.ask_add"),
    A("model_card", "model", "Model card...", "models.show_card", enabled="model"),
    A("check_model", "model", "Check model...", "models.check", enabled="model"),
    A("run", "model", "Run methods", "run_methods", "Ctrl+R", enabled="model_and_image"),
    A(
        "run_series",
        "model",
        "Run methods on every slice",
        "explain_series",
        "Ctrl+Shift+R",
        enabled="volume",
    ),
    A(
        "stability",
        "model",
        "Stability of the maps...",
        "comparison.ask_stability",
        enabled="model_and_image",
    ),
    A("cancel", "model", "Cancel", "cancel", "Esc"),
    A("evaluate", "tools", "Evaluate folder...", "models.evaluate_folder", enabled="model"),
    A("getting_started", "help", "Getting started...", "help.getting_started"),
    A("shortcuts", "help", "Keyboard and mouse...", "help.shortcuts", Key.HelpContents),
    A("about", "help", "About", "help.about"),
    A("search_tags", "help", "Search DICOM tags", "view.focus_tags", "Ctrl+F"),
)
del A

MENUS = (("file", "&File"), ("edit", "&Edit"), ("view", "&View"), ("window", "&Window"))
MENUS += (("model", "&Model"), ("tools", "&Tools"), ("help", "&Help"))
DRAWING_TOOLS = (("rectangle", "Shift+R"), ("ellipse", "Shift+E"), ("polygon", "Shift+P"))


def resolve(window: object, path: str) -> Callable:
    return reduce(getattr, path.split("."), window)


def build_menus(window: QMainWindow, session: ViewerSession) -> tuple[dict[str, QAction], dict[str, QMenu]]:
    """The window's menu bar from :data:`ACTIONS`; every action is also added to the window, so
    its shortcut works with the menu bar hidden. Returns the actions and the menus by id."""
    bar = window.menuBar()
    menus = {key: bar.addMenu(title) for key, title in MENUS}
    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        menu = menus[spec.menu]
        if spec.separator:
            menu.addSeparator()
        action = QAction(spec.text, window, checkable=spec.checkable)
        action.setObjectName(f"action_{spec.id}")
        if spec.shortcut:
            action.setShortcut(QKeySequence(spec.shortcut))
        action.setToolTip(spec.tip or spec.text)
        action.setStatusTip(spec.tip or spec.text)
        if spec.handler:
            handler = resolve(window, spec.handler)
            action.triggered.connect(lambda _=False, h=handler, a=spec.args: h(*a))
        menu.addAction(action)
        window.addAction(action)
        actions[spec.id] = action
    menus["recent"] = recent = QMenu("Open recent", window)
    menus["file"].insertMenu(actions["load_annotation"], recent)
    menus["file"].insertSeparator(actions["load_annotation"])
    conditional = [(actions[s.id], CONDITIONS[s.enabled]) for s in ACTIONS if s.enabled]

    def refresh(*_args) -> None:
        for action, condition in conditional:
            action.setEnabled(condition(session))

    events = session.state.events
    for event in (events.image, events.annotation, events.model):
        event.connect(refresh)
    session.state.layers.events.inserted.connect(refresh)
    session.state.layers.events.removed.connect(refresh)
    refresh()
    return actions, menus


def build_window_menu(window: QMainWindow, menu: QMenu, session: ViewerSession) -> list[QAction]:
    """The Window menu for the image on screen: its file's windows and the modality's presets."""
    state = session.state
    for action in [*menu.actions(), *getattr(window, "window_menu_actions", [])]:
        window.removeAction(action)
    menu.clear()
    entries: list[tuple[str, Callable, str | None]] = [
        ("From file", state.reset_window, "W"),
        ("Auto (percentiles)", lambda: window.view.window_auto(), "0"),
        ("Invert", lambda: setattr(state, "invert", not state.invert), "I"),
    ]
    image = state.image
    if image is not None:
        entries += [
            (f"File: {w.label()}", lambda w=w: setattr(state, "voi", w), None) for w in image.windows[1:]
        ]
        presets = load_presets().presets(image.modality)
        if presets:
            entries.append(("", None, None))
        entries += [
            (p.window.label(), lambda w=p.window: setattr(state, "voi", w), str(p.key) if p.key else None)
            for p in presets
        ]
    made = []
    for text, handler, key in entries:
        if handler is None:
            menu.addSeparator()
            continue
        action = QAction(text, menu)
        if key:
            action.setShortcut(QKeySequence(key))
        action.triggered.connect(lambda _=False, h=handler: h())
        menu.addAction(action)
        window.addAction(action)
        made.append(action)
    # A preset key with no preset for this image says why instead of doing nothing.
    taken = {key for _, _, key in entries if key}
    what = f"{image.modality} images" if image is not None and image.modality else "this image"
    said = f"No window preset on this key for {what} (presets are for CT); W: the file's window, 0: automatic"
    for key in (str(k) for k in range(1, 10) if str(k) not in taken):
        action = QAction(f"Preset {key}", window)
        action.setShortcut(QKeySequence(key))
        action.triggered.connect(lambda _=False: window.say(said, 5000))
        window.addAction(action)
        made.append(action)
    return made


def check_only(actions: dict[str, QAction], chosen: str = "") -> None:
    """Check the action named ``chosen`` and uncheck the others, without triggering them (a
    tool chosen elsewhere, or Esc)."""
    for name, action in actions.items():
        action.blockSignals(True)
        action.setChecked(name == chosen)
        action.blockSignals(False)


def drawing_tools(
    window: QMainWindow, menu: QMenu, on_toggled: Callable[[str, bool], None]
) -> dict[str, QAction]:
    """The exclusive, checkable drawing tools of the Edit menu."""
    group = QActionGroup(window)
    group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
    menu.addSeparator()
    tools = {}
    for tool, key in DRAWING_TOOLS:
        action = QAction(f"Draw {tool}", window, checkable=True)
        action.setShortcut(QKeySequence(key))
        action.setToolTip(f"Draw a {tool} of the target label with the left button ({key})")
        action.toggled.connect(lambda on, t=tool: on_toggled(t, on))
        group.addAction(action)
        menu.addAction(action)
        window.addAction(action)
        tools[tool] = action
    return tools
