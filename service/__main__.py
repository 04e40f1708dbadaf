"""`python -m service`: serve with settings from the `AFRL_*` environment."""

import logging
import sys

from afrl.manifest import ArtifactError
from service.app import run
from service.settings import ServiceSettings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(ServiceSettings())
    except ArtifactError as e:
        sys.exit(f"afrl serve: {e}")
