"""The conversation format of DeepSeek's Janus checkpoints, as a Jinja chat template.

DeepSeek's reference code renders a turn as "<role>: <content>", a user turn ending with a blank
line and an assistant turn with the end-of-sentence token, and opens the answer with "<role>:".
Only the role names differ between the model families:
- Janus-1.3B (the paper's model, DeepSeek's code of October 2024): "User" / "Assistant";
- Janus-Pro (January 2025): the special tokens "<|User|>" / "<|Assistant|>".
An image part renders as the image placeholder followed by a newline, as in DeepSeek's examples
("<image_placeholder>\\n{question}"). Torch-free: the API renders prompts with it too.
"""

IMAGE_PLACEHOLDER = "<image_placeholder>"

JANUS_ROLES = ("User", "Assistant")
JANUS_PRO_ROLES = ("<|User|>", "<|Assistant|>")


def chat_template(user_role: str, assistant_role: str) -> str:
    """A template rendering user/assistant turns with these role names; other roles are capitalized."""
    return (
        # One line without whitespace control: every character outside the tags is output.
        "{% for message in messages %}"
        "{% set role = message['role'] | lower %}"
        "{% if role == 'user' %}" + user_role + ": "
        "{% elif role == 'assistant' %}" + assistant_role + ": "
        "{% else %}{{ message['role'] | capitalize }}: "
        "{% endif %}"
        "{% if message['content'] is string %}{{ message['content'] | trim }}"
        "{% else %}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}" + IMAGE_PLACEHOLDER + "{% if not loop.last %}{{ '\\n' }}{% endif %}"
        "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}"
        "{% endif %}"
        "{% endfor %}"
        "{% endif %}"
        "{% if role == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n\\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}" + assistant_role + ":{% endif %}"
    )
