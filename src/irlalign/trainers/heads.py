"""`Trainer` checkpoints that carry the extra heads of `irlalign.modeling.heads`.

The model folder in every checkpoint stays loadable by `from_pretrained` alone; the heads go to
`irl_heads.safetensors` beside it, and a resume puts them back after HF has loaded the model.
"""

from __future__ import annotations

from transformers import Trainer

from irlalign.modeling.heads import load_heads, save_heads, split_head_state


class HeadsCheckpointMixin(Trainer):
    """Mix in before `Trainer` subclasses whose model may hold heads."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = self.model.state_dict()
        model_state, head_state = split_head_state(state_dict)
        super()._save(output_dir, state_dict=model_state)
        if self.args.should_save:
            save_heads(self.model, output_dir, head_state)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        load_heads(model if model is not None else self.model, resume_from_checkpoint)
