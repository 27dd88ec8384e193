"""A tiny random-weight Janus checkpoint with the real interfaces, built offline.

Everything a caller can observe is real-sized: 384x384 images in and out, 16x16 vision patches
(576 image tokens), a 16384-entry VQ codebook with 8-dim codes and 16x downsampling (24x24
codes), the special tokens and the chat template. Only the widths and depths are tiny, so the
whole service can be tested on a CPU in seconds. The weights are random but seeded, so two
builds are identical and tests can compare outputs exactly.
"""

import os
import shutil
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn
from transformers import (
    GenerationConfig,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusImageProcessorPil,
    JanusProcessor,
    JanusVisionConfig,
    JanusVQVAEConfig,
    LlamaConfig,
)

from janus_model.tiny_tokenizer import BOI_TOKEN, IMAGE_TOKEN, build_tiny_tokenizer

SEED = 1234
IMAGE_SIZE = 384
PATCH_SIZE = 16
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 576
CONTEXT_LENGTH = 2048

# Janus feeds vision features, generation-aligner outputs and text embeddings into the same
# sequence, so all of them must share this width (see JanusConfig / JanusVQVAEConfig docs).
HIDDEN_SIZE = 64

_SEEDED_INIT_LOCK = threading.Lock()


def _text_config(tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vision_config() -> JanusVisionConfig:
    return JanusVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_ratio=2.0,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=HIDDEN_SIZE,
        num_image_tokens=NUM_IMAGE_TOKENS,
    )


def _vq_config() -> JanusVQVAEConfig:
    return JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=16384,
        # GroupNorm(32 groups) inside the VQ blocks needs channel counts divisible by 32; 32 is
        # also the cheapest choice, which keeps decoding a 384x384 image fast on a CPU.
        base_channels=32,
        latent_channels=32,
        # Five levels = four 2x upsamplings = 16x: 24x24 codes -> 384x384 pixels, as in the real model.
        channel_multiplier=[1, 1, 1, 1, 1],
        num_res_blocks=1,
        projection_dim=HIDDEN_SIZE,
        image_token_embed_dim=HIDDEN_SIZE,
    )


def _generation_config(tokenizer) -> GenerationConfig:
    # Janus' image-mode generate() reads bos/pad to build the unconditional rows and
    # generation_kwargs["boi_token_id"] to keep the begin-of-image tag in them.
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        guidance_scale=5.0,
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(BOI_TOKEN)},
    )


def _build_model(tokenizer) -> JanusForConditionalGeneration:
    config = JanusConfig(
        text_config=_text_config(tokenizer),
        vision_config=_vision_config(),
        vq_config=_vq_config(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        # DeepSeek-LLM has its own output head; a random head tied to the input embeddings
        # mostly predicts the token it was just fed, so greedy text would repeat one token.
        tie_word_embeddings=False,
    )
    # fork_rng: seed the weight init without disturbing the caller's global random state. The
    # lock: torch's global RNG is shared by threads, and two interleaved builds would differ.
    with _SEEDED_INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = JanusForConditionalGeneration(config)
        _reinit_for_varied_outputs(model)
    model.generation_config = _generation_config(tokenizer)
    return model.eval()


def _reinit_for_varied_outputs(model: nn.Module) -> None:
    """Redraw weights at unit-variance scale (std 1/sqrt(fan_in), embeddings std 1).

    With transformers' pre-training init (std 0.02) a tiny random model barely depends on the
    position or the previous token: greedy decoding repeats one image token 576 times and a
    token-for-token comparison proves little. At this scale activations stay O(1), attention
    really varies, and greedy runs produce hundreds of distinct codes.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, std=fan_in**-0.5)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)


def _build_processor(tokenizer) -> JanusProcessor:
    image_processor = JanusImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return JanusProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        # The converted Janus-Pro checkpoints prepend a system prompt to understanding prompts.
        use_default_system_prompt=True,
        num_image_tokens=NUM_IMAGE_TOKENS,
    )


def build_tiny_checkpoint(path: str | Path) -> Path:
    """Build the tiny checkpoint into `path` (model, processor/tokenizer, generation config)."""
    path = Path(path)
    tokenizer = build_tiny_tokenizer(model_max_length=CONTEXT_LENGTH)
    _build_model(tokenizer).save_pretrained(path)
    _build_processor(tokenizer).save_pretrained(path)
    return path


def ensure_tiny_checkpoint(path: str | Path) -> Path:
    """Build the tiny checkpoint at `path` unless it is already there.

    Safe against concurrent callers: each builds into its own temporary folder beside `path`
    and renames it into place; rename is atomic, so `path` is either absent or complete. The
    loser of a race finds `path` taken and throws its own copy away.
    """
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the checkpoint should read like any folder
    try:
        build_tiny_checkpoint(staging)
        os.rename(staging, path)
    except OSError:
        # Another process renamed its build into place first; theirs is as good as ours.
        if not path.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
