"""Simulators a learner could write for lab 07: one with a switch per plausible mistake, and a correct
one written differently from the reference (for the catalogue in ``mistakes.py``)."""
from __future__ import annotations

import math
from collections import deque


def make_simulator(admit_only_when_empty=False, ignore_max_batch=False, late_first_token=False,
                    swapped_cost=False, static_no_wait=False, static_own_finish=False, no_padding=False,
                    timeout_from_free=False, dynamic_waits_for_timeout=False):
    def cost(step_time, batch, prefill):
        return step_time(prefill, batch) if swapped_cost else step_time(batch, prefill)

    def simulate(requests, policy, step_time, max_batch, timeout=math.inf):
        order = sorted(range(len(requests)), key=lambda i: (requests[i].arrival, i))
        times = [None] * len(requests)
        if policy == "continuous":
            waiting, running, now = deque(order), {}, 0.0
            cap = math.inf if ignore_max_batch else max_batch
            while waiting or running:
                if not running:
                    now = max(now, requests[waiting[0]].arrival)
                joining = []
                if running and admit_only_when_empty:
                    pass
                else:
                    while waiting and len(running) + len(joining) < cap and requests[waiting[0]].arrival <= now:
                        joining.append(waiting.popleft())
                now += cost(step_time, len(running) + len(joining), sum(requests[i].prompt_len for i in joining))
                for i in joining:
                    running[i] = -1 if late_first_token else 0
                    times[i] = [None, None]
                for i in list(running):
                    running[i] += 1
                    if running[i] == 1 and times[i][0] is None:
                        times[i][0] = now
                    if running[i] == requests[i].output_len:
                        times[i][1] = now
                        del running[i]
            return [tuple(t) for t in times]
        waiting, now = deque(order), 0.0
        wait_for = math.inf if policy == "static" else timeout
        while waiting:
            pending = list(waiting)
            oldest = requests[pending[0]].arrival
            full_at = requests[pending[min(max_batch, len(pending)) - 1]].arrival
            if static_no_wait:
                start = max(now, oldest)
            elif dynamic_waits_for_timeout and policy == "dynamic":
                start = max(now, oldest + timeout)
            elif timeout_from_free and policy == "dynamic":
                start = max(now, min(full_at, max(now, oldest) + wait_for))
            else:
                start = max(now, min(full_at, oldest + wait_for))
            batch = []
            while waiting and len(batch) < max_batch and requests[waiting[0]].arrival <= start:
                batch.append(waiting.popleft())
            n = len(batch)
            prefill = sum(requests[i].prompt_len for i in batch) if no_padding else n * max(requests[i].prompt_len for i in batch)
            first = start + cost(step_time, n, prefill)
            now = first + (max(requests[i].output_len for i in batch) - 1) * cost(step_time, n, 0)
            for i in batch:
                own = first + (requests[i].output_len - 1) * cost(step_time, n, 0)
                times[i] = (first, own if static_own_finish else now)
        return times
    return simulate


def simulate_plain(requests, policy, step_time, max_batch, timeout=math.inf):
    """Right: one clock loop for all three policies, batches as lists of [index, tokens left]."""
    if policy == "static":
        timeout = math.inf
    queue = sorted(range(len(requests)), key=lambda i: requests[i].arrival)
    result = {}
    clock = 0.0
    running = []
    while queue or running:
        if policy == "continuous":
            if not running and requests[queue[0]].arrival > clock:
                clock = requests[queue[0]].arrival
            new = [i for i in queue if requests[i].arrival <= clock][:max_batch - len(running)]
            queue = [i for i in queue if i not in new]
            clock += step_time(len(running) + len(new), sum(requests[i].prompt_len for i in new))
            for i in new:
                result[i] = [clock, None]
                running.append([i, requests[i].output_len])
            for item in running:
                item[1] -= 1
                if item[1] == 0:
                    result[item[0]][1] = clock
            running = [item for item in running if item[1] > 0]
        else:
            arrivals = [requests[i].arrival for i in queue]
            ready = arrivals[min(max_batch, len(queue)) - 1]
            clock = max(clock, min(ready, arrivals[0] + timeout))
            batch = [i for i in queue if requests[i].arrival <= clock][:max_batch]
            queue = [i for i in queue if i not in batch]
            longest_prompt = max(requests[i].prompt_len for i in batch)
            clock += step_time(len(batch), len(batch) * longest_prompt)
            first = clock
            for _ in range(max(requests[i].output_len for i in batch) - 1):
                clock += step_time(len(batch), 0)
            for i in batch:
                result[i] = [first, clock]
    return [tuple(result[i]) for i in range(len(requests))]
