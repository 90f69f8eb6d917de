import sys

from vssim.cli import main

sys.exit(main())
