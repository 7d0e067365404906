import sys

from exporter.app.cli import main

sys.exit(main())
