"""Shared fixtures: the real default models (``lm``, ``rm``) and tiny random models with the
same tokenizer (``tiny_lm``, ``tiny_rm``) for fast unit tests.

Tests that use ``lm`` or ``rm`` should be marked ``@pytest.mark.model``. The tiny fixtures
need only the SmolLM2 tokenizer from the model cache: on a machine whose cache is empty the
first run converts the GGUF once (~20 s), later runs reuse it.
"""

from __future__ import annotations

import os

# Never reach for the hub, whatever the developer's environment says; set before any test
# module imports transformers, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

TINY_SEED = 0


@pytest.fixture(scope="session")
def lm():  # -> rshape_fast.models.LanguageModel
    """The default language model (SmolLM2-135M-Instruct, float32, CPU)."""
    from rshape_fast.models import load_lm

    return load_lm()


@pytest.fixture(scope="session")
def rm():  # -> rshape_fast.models.RewardModel
    """The default reward model (the SmolLM2 positive-sentiment judge, float32, CPU)."""
    from rshape_fast.models import load_reward_model

    return load_reward_model()


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The SmolLM2 tokenizer (chat template, eos/pad ``<|im_end|>``) from the model cache,
    or from the folder ``RSHAPE_FAST_TOKENIZER`` names (the GPU check carries only the
    tokenizer files, not the weights)."""
    from transformers import AutoTokenizer

    from rshape_fast.cache import DEFAULT_LM
    from rshape_fast.models.builtins import ensure_builtin

    folder = os.environ.get("RSHAPE_FAST_TOKENIZER") or ensure_builtin(DEFAULT_LM)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _tiny_llama_config(tokenizer, **overrides):
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


@pytest.fixture(scope="session")
def tiny_lm(smollm2_tokenizer):  # -> rshape_fast.models.LanguageModel
    """A randomly initialised 2-layer LlamaForCausalLM (hidden 64) with the SmolLM2
    tokenizer, wrapped like ``load_lm`` wraps a real model. Deterministic (seeded)."""
    import torch
    from transformers import LlamaForCausalLM

    from rshape_fast.models import LanguageModel

    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(_tiny_llama_config(smollm2_tokenizer, tie_word_embeddings=True))
    model.generation_config.eos_token_id = smollm2_tokenizer.eos_token_id
    model.generation_config.pad_token_id = smollm2_tokenizer.pad_token_id
    return LanguageModel.from_model(model, smollm2_tokenizer, name="tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def save_tiny_causal_lm(smollm2_tokenizer):
    """A function `save(folder, seed, **config) -> str` that writes a randomly initialised
    2-layer Llama causal LM with the SmolLM2 tokenizer to `folder` (a folder `load_lm`
    takes, e.g. as a GenARM ARM)."""
    import torch
    from transformers import LlamaForCausalLM

    def save(folder, seed: int, **overrides) -> str:
        torch.manual_seed(seed)
        config = _tiny_llama_config(smollm2_tokenizer, tie_word_embeddings=True, **overrides)
        model = LlamaForCausalLM(config)
        model.generation_config.eos_token_id = smollm2_tokenizer.eos_token_id
        model.save_pretrained(folder)
        smollm2_tokenizer.save_pretrained(folder)
        return str(folder)

    return save


@pytest.fixture(scope="session")
def tiny_rm(smollm2_tokenizer):  # -> rshape_fast.models.RewardModel
    """A randomly initialised 2-layer LlamaForSequenceClassification (num_labels=1) with the
    SmolLM2 tokenizer, scoring the response alone (template ``"{response}"``, no chat)."""
    import torch
    from transformers import LlamaForSequenceClassification

    from rshape_fast.models import RewardModel

    torch.manual_seed(TINY_SEED + 1)
    model = LlamaForSequenceClassification(_tiny_llama_config(smollm2_tokenizer, num_labels=1))
    return RewardModel(model, smollm2_tokenizer, template="{response}", name="tiny-reward")
