"""An offline byte-level tokenizer with Janus-Pro's special tokens and conversation format.

The real checkpoints use a 102400-entry BPE vocabulary that cannot be downloaded here. The tiny
checkpoint only needs the same *interfaces*: a fast tokenizer that adds BOS, knows the image
placeholder / begin-of-image / end-of-image tokens (JanusProcessor reads them as
`tokenizer.image_token`, `.boi_token`, `.eoi_token`) and a chat template with User/Assistant turns.
A byte-level model with no merges is deterministic by construction and covers any UTF-8 text.
"""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

from janus_model.chat_template import IMAGE_PLACEHOLDER, JANUS_PRO_ROLES, chat_template

# Token strings of the real Janus-Pro tokenizer, so prompts render the same way.
BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
PAD_TOKEN = "<｜▁pad▁｜>"
IMAGE_TOKEN = IMAGE_PLACEHOLDER
BOI_TOKEN = "<begin_of_image>"
EOI_TOKEN = "<end_of_image>"
USER_TOKEN = "<|User|>"
ASSISTANT_TOKEN = "<|Assistant|>"

# Order fixes the ids (256 byte tokens come first), so rebuilding gives the same vocabulary.
SPECIAL_TOKENS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN, BOI_TOKEN, EOI_TOKEN, USER_TOKEN, ASSISTANT_TOKEN]

# Janus-Pro's conversation format: "<|User|>: <image_placeholder>\nquestion\n\n<|Assistant|>:"
# (see janus_model.chat_template).
CHAT_TEMPLATE = chat_template(*JANUS_PRO_ROLES)


def _byte_level_vocab() -> dict[str, int]:
    """One token per byte, id == byte value, spelled in the printable alphabet of byte-level BPE."""
    symbols = _byte_symbols()
    # Guard against a tokenizers release that changes its alphabet: every byte must be encodable.
    assert set(symbols) == set(ByteLevel.alphabet())
    return {symbol: byte for byte, symbol in enumerate(symbols)}


def _byte_symbols() -> list[str]:
    # Byte-level BPE spells printable bytes as themselves and the others as U+0100, U+0101, ...
    # in byte order (the GPT-2 convention the ByteLevel pre-tokenizer uses).
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def build_tiny_tokenizer(model_max_length: int) -> PreTrainedTokenizerFast:
    """Byte-level tokenizer + Janus special tokens + chat template, built without any download."""
    backend = Tokenizer(models.BPE(vocab=_byte_level_vocab(), merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        # Named so that JanusProcessor finds them as tokenizer.image_token / boi_token / eoi_token.
        extra_special_tokens={"image_token": IMAGE_TOKEN, "boi_token": BOI_TOKEN, "eoi_token": EOI_TOKEN},
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=model_max_length,
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
