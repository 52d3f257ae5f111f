"""The checks try inputs the notebooks never show, and the oracles behind them hold.

What a check is fed is part of its design: these tests pin the properties that make a pass
mean something (configs, shapes and settings unlike the lab's, edge cases present). The
answers a learner might write are in each lab's catalogue (tests/test_checks.py).
"""
import torch

from inferlab import memory
from inferlab.checks import memory as memory_checks
from inferlab.checks import quantization as quant_checks

import nbcode



def test_memory_checks_use_configs_the_notebook_does_not_show():
    shown = {"smollm2-135m-instruct", "llama-3.1-8b"}
    for _, cfg in memory_checks._param_cases():
        assert memory.param_count(cfg) not in {memory.param_count(n) for n in shown}
    families = {memory.shape_from_config(cfg).model_type for _, cfg in memory_checks._param_cases()}
    assert families == {"llama", "mistral", "qwen2"}
    kinds = {memory.shape_from_config(cfg).attention for _, cfg, _ in memory_checks._kv_cases()}
    assert kinds == {"mha", "gqa", "mqa", "mla"}
    assert any(memory.max_batch_context(c, g, d, k, contexts=(x,))[x] == 0
               for _, c, g, x, d, k in memory_checks._batch_cases())


def test_quantization_checks_use_inputs_the_notebook_does_not_show():
    shapes = [tuple(w.shape) for per_channel in (False, True) for _, w, _ in quant_checks._int8_cases(per_channel)]
    assert any(len(s) == 1 for s in shapes) and any(len(s) == 3 for s in shapes)
    assert any((w == 0).all() for _, w, _ in quant_checks._int8_cases(False))
    int4 = quant_checks._int4_cases()
    assert any(w.shape[-1] % g for _, w, g, _ in int4)               # a partial last group
    assert any(g > w.shape[-1] for _, w, g, _ in int4)                # a group wider than the row
    assert any(c != 1.0 for _, _, _, c in int4)                       # a clipped range
    special = int4[1][1]
    assert (special[0, :32] == 0).all() and (special[1, 32:] == special[1, 32]).all()
    # the real model's widths (576, 1536) and the lab's group sizes are not among the cases
    assert not any(w.shape[-1] in (576, 1536) for _, w, _, _ in int4)


def test_perplexity_check_uses_settings_the_notebook_does_not():
    cases = quant_checks.models._perplexity_cases()
    assert (512, 256) not in {(w, s) for _, _, w, s, _ in cases}
    assert any(n < w for _, n, w, _, _ in cases)        # a text shorter than the window
    assert any(w == s for _, _, w, s, _ in cases)       # windows without overlap


def test_lab_03_stub_keeps_the_given_helper():
    stub = nbcode.stub("03-quantization")
    assert callable(stub["to_groups"])                     # given to the learner, not an exercise
    grouped, k = stub["to_groups"](torch.arange(5.0)[None], 4)
    assert grouped.shape == (1, 2, 4) and k == 5


def test_lab_01_decode_loop_matches_model_generate(model, tokenizer):
    """The oracle behind the check: the hand loop equals transformers' greedy generate."""
    solution = nbcode.solution("01-anatomy")
    messages = [{"role": "user", "content": "Give me two facts about octopuses."}]
    prompt = solution["build_prompt_ids"](tokenizer, messages)
    mine = list(solution["decode_with_cache"](model, prompt, 16, solution["greedy"]))
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, repetition_penalty=1.0,
                             pad_token_id=tokenizer.eos_token_id)
    theirs = out[0, len(prompt):].tolist()
    assert mine[:len(theirs)] == theirs
