"""Ranks as threads of one process, for checking tensor-parallel code quickly: each rank runs the
learner's function in its own thread, and all_reduce sums the ranks' tensors behind a barrier,
counting its calls. The real thing (processes, torch.distributed) is what the notebook runs."""
from __future__ import annotations

import threading


class ThreadGroup:
    def __init__(self, world_size: int):
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size, timeout=20)
        self._slots: list = [None] * world_size
        self.calls = [0] * world_size

    def all_reduce_for(self, rank: int):
        def all_reduce(tensor):
            self.calls[rank] += 1
            self._slots[rank] = tensor.clone()
            self._barrier.wait()
            total = sum(self._slots[1:], self._slots[0].clone())
            self._barrier.wait()
            tensor.copy_(total)
            return tensor
        return all_reduce

    def run(self, fn) -> list:
        """fn(rank, all_reduce) on every rank; results in rank order; the first error is raised."""
        results, errors = [None] * self.world_size, [None] * self.world_size

        def target(rank):
            try:
                results[rank] = fn(rank, self.all_reduce_for(rank))
            except threading.BrokenBarrierError:
                errors[rank] = RuntimeError("the ranks called all_reduce a different number of times")
            except BaseException as exc:          # noqa: BLE001 -- reported to the check
                errors[rank] = exc
                self._barrier.abort()
        threads = [threading.Thread(target=target, args=(r,), daemon=True) for r in range(self.world_size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        first = next((e for e in errors if e is not None and not isinstance(e, RuntimeError)), None) or \
            next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return results
