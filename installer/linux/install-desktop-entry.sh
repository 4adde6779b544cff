#!/bin/sh
# Add Saliency Viewer to the desktop's application menu (for this user only; no root needed).
# Run from the unpacked archive: ./install-desktop-entry.sh    Undo: ./install-desktop-entry.sh --remove
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$apps/saliency-viewer.desktop" "$icons/saliency-viewer.png"
    echo "removed the Saliency Viewer menu entry"
    exit 0
fi
mkdir -p "$apps" "$icons"
cp "$here/saliency-viewer.png" "$icons/saliency-viewer.png"
sed -e "s|^Exec=.*|Exec=\"$here/SaliencyViewer/SaliencyViewer\" %F|" \
    -e "s|^Icon=.*|Icon=$icons/saliency-viewer.png|" \
    "$here/saliency-viewer.desktop" > "$apps/saliency-viewer.desktop.tmp"
mv "$apps/saliency-viewer.desktop.tmp" "$apps/saliency-viewer.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" || true
echo "installed $apps/saliency-viewer.desktop"
