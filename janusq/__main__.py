import sys

from janusq.cli import main

sys.exit(main())
