"""Image tokens for a batch of images that may come from different jobs.

Each image is one row pair: its prompt (conditional) and the same prompt blanked to BOS + pad +
begin-of-image (unconditional), the layout of transformers' image-mode `generate()`, so greedy
decoding reproduces it token for token. Images of different prompts are left-padded to a common
width; each keeps its own guidance weight, temperature and seed.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from janus_model.decode_step import begin_sampling, pick, prefill
from janus_model.padding import left_pad

# on_step(done) is called after each of the 576 tokens; False ends the batch early.
StepCallback = Callable[[int], bool]
# on_codes(done, [n, done] codes so far): every `preview_every` tokens, for previews.
CodesCallback = Callable[[int, torch.LongTensor], None]


@dataclass(frozen=True)
class ImageRow:
    prompt_ids: torch.LongTensor  # [L]: BOS ... begin-of-image
    cfg_weight: float
    temperature: float  # 0 means greedy
    seed: int  # this image's own seed (sampling.row_seed)


def unconditional_prompt(prompt_ids: torch.LongTensor, pad_token_id: int) -> torch.LongTensor:
    """The prompt with everything between BOS and begin-of-image replaced by the pad token."""
    blank = prompt_ids.clone()
    blank[1:-1] = pad_token_id
    return blank


def generate_codes(engine, rows: list[ImageRow], on_step: StepCallback, on_codes: CodesCallback | None = None,
                   preview_every: int = 0) -> torch.LongTensor | None:
    """[n, 576] VQ codes for n rows, or None when on_step asked to stop. `on_codes` is shown the
    codes so far every `preview_every` tokens (janus_model/previews.py)."""
    mode, pad_id = engine.image_mode, engine.pad_token_id
    samples = engine.batch_bucket(len(rows))
    # Padding images (up to the graph's batch size) repeat the first one, greedily; dropped at the end.
    filler = ImageRow(rows[0].prompt_ids, rows[0].cfg_weight, 0.0, 0)
    padded_rows = rows + [filler] * (samples - len(rows))
    conditional = [row.prompt_ids for row in padded_rows]
    unconditional = [unconditional_prompt(ids, pad_id) for ids in conditional]
    prompts = left_pad(conditional + unconditional, pad_id)
    total = engine.image_token_count

    runner = engine.runner(mode, samples, prompts.width + total)
    state = runner.state
    noise = begin_sampling(mode, state, padded_rows, cfg_weight=[row.cfg_weight for row in padded_rows])
    codes = torch.empty((samples, total), dtype=torch.long, device=state.tokens.device)

    hidden = prefill(mode, state, engine.decoder, engine.model.get_input_embeddings()(prompts.ids), prompts)
    noise.fill(state.noise)
    pick(mode, state, hidden, top_p=False)
    codes[:, 0] = state.tokens
    if not on_step(1):
        return None
    with engine.decode_loop():
        for index in range(1, total):
            noise.fill(state.noise)
            runner.run(prompts.width + index - 1)  # feeds token index-1 at its cache column
            codes[:, index] = state.tokens
            if on_codes is not None and (index + 1) % preview_every == 0 and index + 1 < total:
                on_codes(index + 1, codes[: len(rows), : index + 1])
            if not on_step(index + 1):
                return None
    return codes[: len(rows)]
