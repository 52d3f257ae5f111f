"""inferlab: the helper package of LLM Inference Labs.

One module per concept; each lab imports what it needs, e.g.
``from inferlab import profiles, models, memory, checks``.
"""
__version__ = "0.1.0"
