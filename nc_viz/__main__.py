"""`python -m nc_viz` runs the CLI."""
import sys

from nc_viz.cli import main

if __name__ == "__main__":
    sys.exit(main())
