"""Profiles resolve to a concrete device and model; the embedded model is a normal HF directory."""
import json
import os
from pathlib import Path

import pytest

from inferlab import models, profiles


def test_auto_is_cpu_without_cuda_and_sets_offline(monkeypatch):
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    p = profiles.resolve("auto")
    assert (p.name, p.device, p.dtype, p.offline) == ("cpu", "cpu", "float32", True)
    assert Path(p.model) == models.embedded_model_dir()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_auto_is_gpu_with_cuda(monkeypatch):
    monkeypatch.setattr(profiles, "cuda_available", lambda: True)
    p = profiles.resolve("auto")
    assert (p.name, p.device, p.model) == ("gpu", "cuda", models.GPU_DEFAULT_MODEL)


def test_gpu_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        profiles.resolve("gpu")


def test_unknown_profile_is_an_error():
    with pytest.raises(ValueError, match="unknown PROFILE 'tpu'"):
        profiles.resolve("tpu")


def test_unknown_model_on_the_offline_profile_says_what_to_do(monkeypatch):
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    with pytest.raises(ValueError, match="unknown model 'no-such-org/no-such-model'.*local path"):
        profiles.resolve("cpu", "no-such-org/no-such-model")


def test_a_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        models.resolve_model(str(tmp_path), offline=True)


def test_embedded_aliases_and_local_dirs(tmp_path):
    assert models.resolve_model("embedded", offline=True) == str(models.embedded_model_dir())
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model(str(tmp_path), offline=True) == str(tmp_path.resolve())


def test_embedded_model_is_an_ordinary_hf_directory():
    path = models.prepare_embedded()
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert models.embedded_gguf().name == models.EMBEDDED_GGUF


def test_prepare_writes_atomically_into_a_fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    path = models.prepare_embedded(verbose=False)
    assert path == tmp_path / "models" / models.EMBEDDED_NAME and models.embedded_ready()
    assert [p.name for p in path.parent.iterdir()] == [models.EMBEDDED_NAME], "staging directory left behind"


def test_display_name_never_shows_an_absolute_path(tmp_path):
    assert "/" not in models.display_name(str(models.embedded_model_dir())).split(" ")[0]
    assert str(tmp_path) not in models.display_name(str(tmp_path))
    assert models.display_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"


def test_loaded_embedded_model_generates_on_cpu():
    p = profiles.resolve("cpu")
    model, tokenizer = models.load(p)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
