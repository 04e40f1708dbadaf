"""`python service_fake_server.py ARTIFACT PORT DELAY_S GRACE_S`: `service.app.run` over a slow fake backend.

What the SIGTERM tests start as a real process: uvicorn's signal handling
only works in a main thread. Batches of two rows or more take DELAY_S
(warmup's single rows do not), so requests of several documents are slow.
"""

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from service_testkit import FakeBackend  # noqa: E402

from service.app import run  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    artifact, port, delay, grace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

    class SlowBackend(FakeBackend):
        def label_logits(self, input_ids, attention_mask):
            if len(input_ids) > 1:
                time.sleep(delay)
            return super().label_logits(input_ids, attention_mask)

    backend = SlowBackend()
    settings = ServiceSettings(model=artifact, port=port, grace_period_s=grace, max_document_tokens=16)
    run(settings, backend_factory=lambda folder, manifest, s: backend)
