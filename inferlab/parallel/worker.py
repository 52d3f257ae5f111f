"""One rank of ``inferlab.parallel.run_workers``: join the group, run the function, write its result."""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path


def main(workdir: str) -> None:
    import cloudpickle
    import torch
    import torch.distributed as dist
    torch.set_num_threads(int(os.environ.get("INFERLAB_THREADS", "1")))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(os.environ.get("INFERLAB_BACKEND", "gloo"), rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        fn, args = cloudpickle.loads((Path(workdir) / "payload.pkl").read_bytes())
        result = fn(rank, world, *args)
        tmp = Path(workdir) / f"result{rank}.pkl.tmp"
        tmp.write_bytes(cloudpickle.dumps(result))
        tmp.replace(Path(workdir) / f"result{rank}.pkl")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
