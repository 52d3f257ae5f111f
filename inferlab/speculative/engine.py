"""What a serving engine reports about its own speculation: vLLM's ``/metrics`` counters
(``vllm:spec_decode_num_drafts``, ``..._num_draft_tokens``, ``..._num_accepted_tokens`` and
``..._num_accepted_tokens_per_pos`` by draft position), turned into the numbers of this lab."""
from __future__ import annotations

PREFIX = "vllm:spec_decode_"


def spec_counters(metrics) -> dict:
    """The speculation counters of one ``/metrics`` scrape (a parsed ``engines.Metrics``)."""
    per_pos = {int(labels["position"]): value
               for labels, value in metrics.labelled(PREFIX + "num_accepted_tokens_per_pos_total")}
    return {"drafts": metrics.get(PREFIX + "num_drafts_total", 0.0),
            "draft_tokens": metrics.get(PREFIX + "num_draft_tokens_total", 0.0),
            "accepted": metrics.get(PREFIX + "num_accepted_tokens_total", 0.0),
            "per_position": [per_pos[i] for i in sorted(per_pos)]}


def engine_acceptance(before: dict, after: dict) -> dict:
    """What happened between two scrapes: drafts, draft tokens, accepted tokens, the acceptance rate per
    draft position, the per-token rate alpha and the mean accepted length.

    alpha counts, as ``speculative.estimate_alpha`` does, the comparisons up to the first rejection: a
    draft whose last position was accepted made no failed comparison, every other draft made one.
    Assumes drafts of the full length k (vLLM's draft tokens = drafts x k then, and it is checked).
    """
    drafts = after["drafts"] - before["drafts"]
    tokens = after["draft_tokens"] - before["draft_tokens"]
    accepted = after["accepted"] - before["accepted"]
    per_pos = [a - b for a, b in zip(after["per_position"], before["per_position"] or [0.0] * len(after["per_position"]))]
    k = len(per_pos)
    if drafts and abs(tokens - drafts * k) > 0.5:
        raise ValueError(f"{tokens:.0f} draft tokens in {drafts:.0f} drafts of length {k}: drafts of varying length")
    compared = accepted + drafts - (per_pos[-1] if per_pos else 0.0)
    return {"drafts": int(drafts), "draft tokens": int(tokens), "accepted tokens": int(accepted),
            "acceptance by position": [p / drafts if drafts else float("nan") for p in per_pos],
            "alpha": accepted / compared if compared else float("nan"),
            "mean accepted per draft": accepted / drafts if drafts else float("nan")}
