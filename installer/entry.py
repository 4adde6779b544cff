"""Entry point of the frozen app: the same ``saliency-viewer`` command as a source install."""

import sys

from viewer.launch import main

if __name__ == "__main__":
    sys.exit(main())
