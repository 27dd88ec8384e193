"""Janus at its real sizes with random weights, for benchmarks: no checkpoint, no download.

Shapes follow the published checkpoints (DeepSeek-LLM language models, SigLIP-L/16 at 384 px,
the 16384-code VQ tokenizer); values are random, which is all a speed or memory measurement needs.
"""

import torch
from transformers import (GenerationConfig, JanusConfig, JanusForConditionalGeneration, JanusVisionConfig,
                          JanusVQVAEConfig, LlamaConfig)

LANGUAGE_MODELS = {
    "janus-1.3b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16},
    "janus-pro-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 30,
                     "num_attention_heads": 32},
}
VOCABULARY = 102400
BOS, EOS, PAD, BOI = 100000, 100001, 100002, 100016
IMAGE_TOKEN = 100581


def real_size_config(name: str) -> JanusConfig:
    width = LANGUAGE_MODELS[name]
    text = LlamaConfig(vocab_size=VOCABULARY, num_key_value_heads=width["num_attention_heads"],
                       max_position_embeddings=16384, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, **width)
    hidden = width["hidden_size"]
    vision = JanusVisionConfig(projection_dim=hidden)
    vq = JanusVQVAEConfig(projection_dim=hidden, image_token_embed_dim=hidden, num_patches=24)
    return JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.to_dict(),
                       image_token_id=IMAGE_TOKEN)


def random_model(name: str, device: torch.device, dtype: torch.dtype) -> JanusForConditionalGeneration:
    """The model built straight on `device` (a 7B model initialises in seconds on a GPU)."""
    with torch.device(device):
        model = JanusForConditionalGeneration._from_config(real_size_config(name), dtype=dtype)
    # No end-of-text: a benchmark answer always runs its full length, on both paths.
    model.generation_config = GenerationConfig(bos_token_id=BOS, pad_token_id=PAD, eos_token_id=None,
                                               guidance_scale=5.0, generation_kwargs={"boi_token_id": BOI})
    return model.eval()


def synthetic_generation_prompt(length: int, salt: int = 0) -> torch.LongTensor:
    """[length] ids shaped like a formatted prompt: BOS, text, begin-of-image."""
    body = (torch.arange(length - 2) * 7919 + salt * 104729) % 90000 + 1000
    return torch.cat([torch.tensor([BOS]), body, torch.tensor([BOI])])


def synthetic_understanding_prompt(text_tokens: int, image_tokens: int = 576) -> torch.LongTensor:
    """[image_tokens + text_tokens] ids: BOS, some text, the image placeholders, the question."""
    text = (torch.arange(text_tokens - 1) * 7919) % 90000 + 1000
    head, tail = text[: len(text) // 2], text[len(text) // 2:]
    return torch.cat([torch.tensor([BOS]), head, torch.full((image_tokens,), IMAGE_TOKEN), tail])
