"""What the viewer shows, as plain Python objects with events (psygnal). No Qt.

Qt widgets bind to this model both ways (napari's split of data from views): a widget changes a
field, every view of that field hears the event. Tests and the headless screenshot mode drive the
same objects.
"""

from viewer.state.layers import LayerList, SaliencyLayer
from viewer.state.map_cache import MapCache, MapKey
from viewer.state.viewer_state import ViewerState

__all__ = ["LayerList", "MapCache", "MapKey", "SaliencyLayer", "ViewerState"]
