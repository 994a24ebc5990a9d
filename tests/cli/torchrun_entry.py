"""``equidmri`` as a torchrun script that records which process writes checkpoints (for tests/cli/test_train_cohort.py).

Each call of the training loop's ``save_checkpoint`` appends the checkpoint's path to
``$EQUIDMRI_TEST_WRITES.<RANK>`` before writing it.
"""

import os
import sys

from equidmri.cli.main import main
from equidmri.recon import train

_save = train.save_checkpoint


def _recording_save(path, state):
    with open(f"{os.environ['EQUIDMRI_TEST_WRITES']}.{os.environ.get('RANK', '0')}", "a", encoding="utf-8") as log:
        log.write(f"{path}\n")
    return _save(path, state)


train.save_checkpoint = _recording_save

if __name__ == "__main__":
    sys.exit(main())
