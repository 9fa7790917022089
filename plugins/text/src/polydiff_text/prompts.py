"""Prompts and infilling templates for text models: ``{{N}}`` marks N tokens to generate.

A template is text with spans to fill, e.g. ``"ROMEO:\\n{{40}}\\nJULIET:"``: the text pieces
are tokenised and kept, each ``{{N}}`` is N positions for the model to generate, and every
position after the template's end is generated too (so a template without spans is a
prefix prompt). The result is the inpainting input of the core: known ids and a mask (1
where given), which ``polydiff sample RUN --inpaint FILE`` reads from a safetensors file:

    python -m polydiff_text.prompts RUN_DIR "ROMEO:" "To be, or {{30}} that is the question" --out prompts.safetensors
    polydiff sample RUN_DIR --n 2 --inpaint prompts.safetensors

The samples keep the given tokens exactly and ``samples.txt`` shows each prompt with its
generated runs as ``[...]``. Masked samplers condition on the whole context (left and right);
the autoregressive model keeps the given tokens but, being causal, sees only what precedes
each position.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import polydiff

SPAN = re.compile(r"\{\{(\d+)\}\}")


def template_ids(modality: Any, template: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(seq_len,)`` and the given-mask ``(seq_len,)`` bool of one template.

    Generated positions hold ``<eos>`` as a placeholder id (the sampler overwrites them).

    Raises:
        polydiff.ConfigError: the template needs more than ``seq_len`` tokens (naming both).
    """
    ids: list[int] = []
    given: list[bool] = []
    position = 0
    for match in SPAN.finditer(template):
        piece = modality.tokenizer.encode(template[position:match.start()], special=True).tolist()
        ids += piece + [modality.eos_id] * int(match.group(1))
        given += [True] * len(piece) + [False] * int(match.group(1))
        position = match.end()
    tail = modality.tokenizer.encode(template[position:], special=True).tolist()
    ids, given = ids + tail, given + [True] * len(tail)
    if len(ids) > modality.seq_len:
        raise polydiff.ConfigError(f"prompt template {template!r} needs {len(ids)} tokens; the model's sequences "
                                   f"have seq_len {modality.seq_len}")
    free = modality.seq_len - len(ids)
    return (torch.tensor(ids + [modality.eos_id] * free, dtype=torch.long),
            torch.tensor(given + [False] * free, dtype=torch.bool))


def known_state(modality: Any, templates: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Known values and masks, ``{"tokens": (n, seq_len)}`` each (``(n, seq_len, d)`` for the
    embedding representation), one row per template: ``Experiment.sample(known=, mask=)``."""
    if not templates:
        raise polydiff.ConfigError("prompts: give at least one template")
    rows = [template_ids(modality, t) for t in templates]
    ids = torch.stack([r[0] for r in rows])
    mask = torch.stack([r[1] for r in rows]).to(torch.float32)
    if modality.embeddings is None:
        return {"tokens": ids}, {"tokens": mask}
    d = modality.embeddings.shape[1]
    return {"tokens": modality.embeddings[ids]}, {"tokens": mask[..., None].expand(-1, -1, d).contiguous()}


def write_inpaint_file(modality: Any, templates: Sequence[str], path: str | Path) -> Path:
    """Write the safetensors file ``polydiff sample --inpaint`` reads (``tokens``, ``tokens.mask``)."""
    from safetensors.torch import save_file

    known, mask = known_state(modality, templates)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"tokens": known["tokens"].contiguous(), "tokens.mask": mask["tokens"].contiguous()}, str(path))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m polydiff_text.prompts RUN_DIR TEMPLATE... --out FILE`` (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m polydiff_text.prompts", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a trained text run (its tokenizer and seq_len are used)")
    parser.add_argument("templates", nargs="+", help="texts with {{N}} spans to generate")
    parser.add_argument("--out", type=Path, default=Path("prompts.safetensors"))
    args = parser.parse_args(argv)
    try:
        modality = polydiff.load_run(args.run_dir).experiment.modality
        path = write_inpaint_file(modality, args.templates, args.out)
    except polydiff.PolydiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(args.templates)
    print(f"{n} template(s) written to {path}; sample with: polydiff sample {args.run_dir} --n {n} --inpaint {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
