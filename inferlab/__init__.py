"""inferlab: the helper package of LLM Inference Labs.

One module per concept; each lab imports what it needs, e.g.
``from inferlab import profiles, models, memory, checks``.
"""
__version__ = "0.1.0"

import warnings as _warnings

# transformers' progress bars use tqdm.auto, which warns (with a local file path) in a Jupyter
# kernel without ipywidgets and then falls back to text bars; the fallback is all we need.
_warnings.filterwarnings("ignore", message="IProgress not found")
