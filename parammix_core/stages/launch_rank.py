"""One rank of a launched training stage: what torchrun runs in each process.

    python -m torch.distributed.run --standalone --nproc_per_node=N \
        -m parammix_core.stages.launch_rank JOB.json

Apart from `launch.py` because the stage modules import that one: run with `-m` it would be
imported twice (runpy warns).
"""

import sys

from parammix_core.stages.launch import main

if __name__ == "__main__":
    main(sys.argv[1:])
