import sys

from cnnframe.cli import main

sys.exit(main())
