"""Speculative decoding (lab 09): drafters, greedy draft-and-verify with a KV-cache roll-back, the
speculative sampling rule, and the speed-up model -- the references the lab's checks compare against.

    run = speculative.speculative_greedy(model, speculative.PromptLookup(), ids, 64, k=4)
    draft = speculative.DraftModel(speculative.truncated_model(model, 6))
    speculative.speedup(alpha=0.7, c=0.2, k=4)

One module per idea: ``drafts``, ``verify``, ``sampling``, ``speedup``, ``costs`` (measuring alpha and
c), ``engine`` (vLLM's counters), ``workloads``.
"""
from inferlab.speculative.costs import forward_costs, forward_seconds, greedy_agreement
from inferlab.speculative.drafts import DraftModel, PromptLookup, Timed, prompt_lookup, save_model, truncated_model
from inferlab.speculative.engine import engine_acceptance, spec_counters
from inferlab.speculative.sampling import acceptance_probability, speculative_sample
from inferlab.speculative.speedup import best_k, estimate_alpha, expected_tokens, speedup
from inferlab.speculative.verify import SpecRun, speculative_greedy
from inferlab.speculative.workloads import copy_messages, open_messages

__all__ = ["DraftModel", "PromptLookup", "SpecRun", "Timed", "acceptance_probability", "best_k", "copy_messages",
           "engine_acceptance", "estimate_alpha", "expected_tokens", "forward_costs", "forward_seconds",
           "greedy_agreement", "open_messages", "prompt_lookup", "save_model", "spec_counters", "speculative_greedy",
           "speculative_sample", "speedup", "truncated_model"]
