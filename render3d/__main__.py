import sys

from render3d.cli import main

sys.exit(main())
