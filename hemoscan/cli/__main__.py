import sys

from hemoscan.cli import main

sys.exit(main())
