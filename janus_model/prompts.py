"""The conversations Janus is prompted with. Torch-free: the API's input validation uses it too.

Both tasks are single user turns rendered with the checkpoint's own chat template, ending in the
assistant's turn. For image generation JanusProcessor(generation_mode="image") then appends the
begin-of-image tag, exactly as transformers' Janus generation expects.
"""

# What JanusProcessor prepends to understanding prompts when its `use_default_system_prompt` is set
# (the converted Janus-Pro checkpoints set it). Mirrored here because importing the processor module
# pulls in torch; tests/janus_model checks it still equals transformers' constant.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language.\n\n"
)


def generation_messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": prompt}]}]


def understanding_messages(question: str) -> list[dict]:
    # The image goes first, as in DeepSeek's examples ("<image_placeholder>\n{question}").
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def render(template_owner, messages: list[dict]) -> str:
    """Apply the chat template of a processor or tokenizer, opening the assistant's turn."""
    return template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
