"""Structured output: constraining what a model may write, and measuring what that buys and costs.

    texts = structured.token_texts(tokenizer, vocab_size)
    sequences = structured.every_tokenization(["yes", "no"], texts)     # what a choice must allow
    mask = structured.GrammarMask(compiled_grammar, vocab_size)          # xgrammar, step by step
    replies = structured.ask(server, conversations, {"json": schema})    # through vLLM or SGLang

One module per concern: ``tickets`` (the lab's task, schema and scoring), ``vocab`` (token texts,
tokenizations), ``masks`` (xgrammar, model logits, mask agreement), ``requests`` (a constraint as
each engine's request fields).
"""
from inferlab.structured.tickets import ACTIONS, SCHEMA, SYSTEM, Case, Ticket, cases, messages, score
from inferlab.structured.vocab import canonical_tokenization, every_tokenization, token_texts, tokenizations
from inferlab.structured.masks import (GrammarMask, NextTokenLogits, agreement, allowed_by_xgrammar, choice_grammar,
                                       tokenizer_info, xgrammar_masks_along)
from inferlab.structured.requests import KINDS, ask, bench_body, renamed, request_params

__all__ = ["ACTIONS", "Case", "GrammarMask", "KINDS", "NextTokenLogits", "SCHEMA", "SYSTEM", "Ticket", "agreement",
           "allowed_by_xgrammar", "ask", "bench_body", "canonical_tokenization", "cases", "choice_grammar",
           "every_tokenization", "messages", "renamed", "request_params", "score", "token_texts", "tokenizations",
           "tokenizer_info", "xgrammar_masks_along"]
