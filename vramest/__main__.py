import sys

from vramest.cli import main

sys.exit(main())
