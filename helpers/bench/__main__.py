import sys

from helpers.bench.command import main

sys.exit(main())
