"""``python -m ingest``: run the ingestor (see ``ingest.ingestor``)."""

import sys

from ingest.ingestor import main

sys.exit(main())
