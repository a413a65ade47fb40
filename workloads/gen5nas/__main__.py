import sys

from gen5nas.cli import main

sys.exit(main())
