"""Decoders and samplers a learner could write for lab 09, each wrong in one named way (or right in a
different way); ``mistakes.CATALOGUE`` says what the checks must answer to each."""
from __future__ import annotations

import torch


# ----------------------------------------------------------------------------- greedy draft and verify

def _greedy(model, propose, input_ids, max_new_tokens, k, eos_token_id=None, *, rollback=True, align=0,
            verify=True, target_token=True, bonus=True, cap=True, count_bonus=False, eos=True, batched=True,
            cached=True, at_least_one_step=False):
    """The reference with one rule switched off at a time (each mistake below names one)."""
    prompt = [int(t) for t in torch.as_tensor(input_ids).reshape(-1)]
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        cache, tokens, steps = out.past_key_values, [int(out.logits[0, -1].argmax())], []
        while (len(tokens) < max_new_tokens or at_least_one_step and not steps) and \
                (not eos or eos_token_id is None or tokens[-1] != eos_token_id):
            room = max_new_tokens - len(tokens) - 1
            draft = [int(t) for t in propose(prompt + tokens, k)][:min(k, room) if cap else k]
            if not cached:
                logits = model(input_ids=torch.tensor([prompt + tokens + draft])).logits[0, len(prompt) + len(tokens) - 1:]
            elif batched:
                logits = model(input_ids=torch.tensor([tokens[-1:] + draft]), past_key_values=cache,
                               use_cache=True).logits[0]
            else:
                rows = [model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True).logits[0, -1]
                        for t in tokens[-1:] + draft]
                logits = torch.stack(rows)
            choice = logits.argmax(dim=-1).tolist() + [0]
            n = 0
            while n < len(draft) and (not verify or draft[n] == choice[n + align]):
                n += 1
            if cached and rollback:
                cache.crop(-(len(draft) - n))
            new = draft[:n]
            if n < len(draft) and target_token or n == len(draft) and (bonus or not draft):
                new.append(choice[n])
            elif n == len(draft) and not bonus and cached and rollback == "exact":
                cache.crop(-1)
            steps.append((len(draft), n + 1 if count_bonus else n))
            for token in new:
                tokens.append(token)
                if eos and token == eos_token_id:
                    break
    return tokens, steps


def greedy_no_rollback(*a, **kw):
    return _greedy(*a, **kw, rollback=False)


def greedy_scores_with_next_position(*a, **kw):
    return _greedy(*a, **kw, align=1)


def greedy_keeps_every_draft(*a, **kw):
    return _greedy(*a, **kw, verify=False)


def greedy_no_token_after_rejection(*a, **kw):
    return _greedy(*a, **kw, target_token=False)


def greedy_never_adds_a_token_after_full_acceptance(model, propose, input_ids, max_new_tokens, k, eos_token_id=None):
    """Drops the bonus, also after an empty draft: the step then adds nothing."""
    prompt = [int(t) for t in torch.as_tensor(input_ids).reshape(-1)]
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        cache, tokens, steps = out.past_key_values, [int(out.logits[0, -1].argmax())], []
        while len(tokens) < max_new_tokens:
            draft = [int(t) for t in propose(prompt + tokens, k)][:min(k, max_new_tokens - len(tokens) - 1)]
            choice = model(input_ids=torch.tensor([tokens[-1:] + draft]), past_key_values=cache,
                           use_cache=True).logits[0].argmax(-1).tolist()
            n = 0
            while n < len(draft) and draft[n] == choice[n]:
                n += 1
            cache.crop(-(len(draft) - n + 1))
            steps.append((len(draft), n))
            tokens += draft[:n] + ([choice[n]] if n < len(draft) else [])
    return tokens, steps


def greedy_drops_bonus(*a, **kw):
    return _greedy(*a, **kw, bonus=False, rollback="exact")


def greedy_drops_bonus_keeps_its_kv(*a, **kw):
    return _greedy(*a, **kw, bonus=False)


def greedy_one_pass_per_token(*a, **kw):
    return _greedy(*a, **kw, batched=False)


def greedy_without_cache(*a, **kw):
    return _greedy(*a, **kw, cached=False)


def greedy_counts_bonus_as_accepted(*a, **kw):
    return _greedy(*a, **kw, count_bonus=True)


def greedy_ignores_eos(*a, **kw):
    return _greedy(*a, **kw, eos=False)


def greedy_overshoots(model, propose, input_ids, max_new_tokens, k, eos_token_id=None):
    tokens, steps = _greedy(model, propose, input_ids, max_new_tokens, k, eos_token_id, cap=False)
    return tokens, steps


def greedy_always_verifies_once(*a, **kw):
    tokens, steps = _greedy(*a, **kw, at_least_one_step=True)
    return tokens, steps


def greedy_uncapped_then_cut(model, propose, input_ids, max_new_tokens, k, eos_token_id=None):
    """Right: drafts k tokens even near the end and cuts the output afterwards."""
    tokens, steps = _greedy(model, propose, input_ids, max_new_tokens, k, eos_token_id, cap=False)
    return tokens[:max_new_tokens], steps


@torch.inference_mode()
def greedy_vectorised(model, propose, input_ids, max_new_tokens, k, eos_token_id=None):
    """Right: an explicit DynamicCache, model.forward, acceptance by cumprod, the cache cut by its length."""
    from transformers import DynamicCache
    prompt = torch.as_tensor(input_ids).reshape(1, -1)
    cache = DynamicCache()
    logits = model.forward(input_ids=prompt, past_key_values=cache, use_cache=True).logits
    tokens, steps = [int(logits[0, -1].argmax())], []
    while len(tokens) < max_new_tokens and tokens[-1] != eos_token_id:
        context = prompt[0].tolist() + tokens
        draft = torch.tensor(list(propose(context, k))[:min(k, max_new_tokens - len(tokens) - 1)], dtype=torch.long)
        fed = torch.cat([torch.tensor(tokens[-1:]), draft]).reshape(1, -1)
        choice = model.forward(input_ids=fed, past_key_values=cache, use_cache=True).logits[0].argmax(-1)
        n = int(torch.cumprod((choice[:len(draft)] == draft).long(), 0).sum())
        cache.crop(len(context) + n - cache.get_seq_length())
        steps.append((len(draft), n))
        new = draft[:n].tolist() + [int(choice[n])]
        if eos_token_id in new:
            new = new[:new.index(eos_token_id) + 1]
        tokens += new
    return tokens, steps


# ----------------------------------------------------------------------------- speculative sampling

def _sample(target_probs, draft_probs, draft_tokens, generator, *, accept="ratio", residual="clipped",
            bonus="last", after_reject="stop"):
    out = []
    k = len(draft_tokens)
    for i, x in enumerate(draft_tokens.tolist()):
        p, q = target_probs[i], draft_probs[i]
        u = torch.rand((), generator=generator, dtype=p.dtype)
        keep = {"ratio": u < p[x] / q[x], "p": u < p[x], "inverse": u < q[x] / p[x], "p>=q": p[x] >= q[x],
                "argmax": x == int(p.argmax())}[accept]
        if keep:
            out.append(x)
            continue
        if residual == "none":
            return out
        dist = {"clipped": torch.clamp(p - q, min=0), "p": p, "q": q, "abs": (p - q).abs()}.get(residual)
        if residual == "unnormalised":
            cdf = torch.cumsum(torch.clamp(p - q, min=0), 0)
            idx = int(torch.searchsorted(cdf, torch.rand((), generator=generator, dtype=p.dtype)))
            out.append(min(idx, len(p) - 1))
        else:
            out.append(int(torch.multinomial(dist / dist.sum(), 1, generator=generator)))
        if after_reject == "stop":
            return out
    if bonus == "last":
        out.append(int(torch.multinomial(target_probs[k], 1, generator=generator)))
    elif bonus == "previous":
        out.append(int(torch.multinomial(target_probs[k - 1], 1, generator=generator)))
    return out


def sample_accepts_with_p(*a):
    return _sample(*a, accept="p")


def sample_accepts_with_q_over_p(*a):
    return _sample(*a, accept="inverse")


def sample_accepts_if_p_at_least_q(*a):
    return _sample(*a, accept="p>=q")


def sample_accepts_the_argmax(*a):
    return _sample(*a, accept="argmax")


def sample_resamples_from_p(*a):
    return _sample(*a, residual="p")


def sample_resamples_from_q(*a):
    return _sample(*a, residual="q")


def sample_resamples_from_abs_difference(*a):
    return _sample(*a, residual="abs")


def sample_residual_not_normalised(*a):
    return _sample(*a, residual="unnormalised")


def sample_no_token_after_rejection(*a):
    return _sample(*a, residual="none")


def sample_no_bonus(*a):
    return _sample(*a, bonus="none")


def sample_bonus_from_previous_row(*a):
    return _sample(*a, bonus="previous")


def sample_continues_after_rejection(*a):
    return _sample(*a, after_reject="continue")


def sample_one_uniform_per_step(target_probs, draft_probs, draft_tokens, generator):
    u = torch.rand((), generator=generator, dtype=target_probs.dtype)
    out = []
    for i, x in enumerate(draft_tokens.tolist()):
        p, q = target_probs[i], draft_probs[i]
        if u < p[x] / q[x]:
            out.append(x)
            continue
        r = torch.clamp(p - q, min=0)
        return out + [int(torch.multinomial(r / r.sum(), 1, generator=generator))]
    return out + [int(torch.multinomial(target_probs[-1], 1, generator=generator))]


def sample_gumbel(target_probs, draft_probs, draft_tokens, generator):
    """Right: Bernoulli acceptance and the Gumbel-max trick for the draws."""
    def draw(weights):
        u = torch.rand(weights.shape, generator=generator, dtype=weights.dtype).clamp_min(1e-300)
        return int(torch.argmax(torch.log(weights) - torch.log(-torch.log(u))))
    out = []
    for i, x in enumerate(int(t) for t in draft_tokens):
        p, q = target_probs[i], draft_probs[i]
        if torch.bernoulli(torch.clamp(p[x] / q[x], max=1.0), generator=generator):
            out.append(x)
        else:
            return out + [draw(torch.where(p > q, p - q, torch.zeros_like(p)))]
    return out + [draw(target_probs[len(out)])]


def sample_inverse_cdf(target_probs, draft_probs, draft_tokens, generator):
    """Right: the comparison u * q < p and a normalised inverse-CDF draw."""
    def draw(weights):
        cdf = torch.cumsum(weights / weights.sum(), 0)
        return min(int(torch.searchsorted(cdf, torch.rand((), generator=generator, dtype=cdf.dtype))), len(cdf) - 1)
    for i, x in enumerate(draft_tokens.tolist()):
        if torch.rand((), generator=generator, dtype=torch.float64) * draft_probs[i, x] >= target_probs[i, x]:
            return draft_tokens[:i].tolist() + [draw((target_probs[i] - draft_probs[i]).clamp(min=0))]
    return draft_tokens.tolist() + [draw(target_probs[-1])]
