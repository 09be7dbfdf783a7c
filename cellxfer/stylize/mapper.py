"""The InST style token: CLIP image embedding -> attention network -> embedding of a placeholder token.

:class:`StyleMapper` follows the InST code (``Attentions`` in its ``embedding_manager.py``): per block,
self-attention on the embedding, cross-attention from that to the embedding (the context), dropout and
a linear layer; ``heads`` x ``dim_head`` inner width (8 x 64 for SD v1, model width 768). When the CLIP
projection width differs from the text width a linear input projection is added.

:func:`encode_prompt` runs the frozen CLIP text encoder with the placeholder's row of the token
embedding replaced by the mapper's output, through a forward hook on the embedding layer (transformers
5's ``CLIPTextModel`` takes no ``inputs_embeds``); gradients reach the mapper.

Token file (``.safetensors``): the mapper's tensors plus metadata ``format`` = ``cellxfer-inst-token``,
``mapper`` (JSON: widths, heads, dim_head, blocks, dropout), ``placeholder``, ``prompt``, ``steps``,
``model`` / ``clip`` (the paths it was trained with).
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from cellxfer.errors import InputError
from cellxfer.stylize.config import resolve_token

TOKEN_FORMAT = "cellxfer-inst-token"


class CrossAttention(nn.Module):
    """Multi-head attention, queries from ``x`` (B, N, dim), keys/values from ``context`` (B, M, ctx)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0, context_dim: int | None = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x, context=None):
        context = x if context is None else context
        b = x.shape[0]
        q, k, v = (t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1]))


class StyleBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, dim_head, dropout)  # self-attention
        self.attn2 = CrossAttention(dim, heads, dim_head, dropout)  # cross-attention to the context
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x, context):
        return self.net(self.attn2(self.attn1(x), context))


class StyleMapper(nn.Module):
    """(B, image_dim) CLIP image embeddings -> (B, text_width) placeholder-token embeddings."""

    def __init__(self, image_dim: int, text_width: int, heads: int = 8, dim_head: int = 64, blocks: int = 1, dropout: float = 0.05):
        super().__init__()
        self.spec = dict(image_dim=image_dim, text_width=text_width, heads=heads, dim_head=dim_head, blocks=blocks, dropout=dropout)
        self.proj = nn.Identity() if image_dim == text_width else nn.Linear(image_dim, text_width)
        self.blocks = nn.ModuleList(StyleBlock(text_width, heads, dim_head, dropout) for _ in range(blocks))

    def forward(self, image_embeds):
        ctx = self.proj(image_embeds.float())[:, None, :]
        x = ctx
        for block in self.blocks:
            x = block(x, ctx)
        return x[:, 0]


# -- prompts ------------------------------------------------------------------------------------------
def placeholder_id(tokenizer, placeholder: str, source: str) -> int:
    ids = tokenizer(placeholder, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise InputError(f"{source}: the placeholder {placeholder!r} is {len(ids)} tokens for this tokenizer; it must be one")
    return int(ids[0])


def tokenize(tokenizer, prompts: list[str]):
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode_prompt(text_encoder, input_ids, token_id: int | None = None, token_embeds=None):
    """CLIP text hidden states (B, 77, width) for ``input_ids`` (B, 77); where ``input_ids == token_id``
    the token embedding is replaced by the row of ``token_embeds`` (B, width) of that prompt."""
    emb = text_encoder.get_input_embeddings()
    handle = None
    if token_embeds is not None:
        mask = (input_ids == token_id).to(emb.weight.device)

        def hook(_module, _inputs, output):
            tok = token_embeds.to(output.dtype)[:, None, :].expand_as(output)
            return torch.where(mask[..., None], tok, output)

        handle = emb.register_forward_hook(hook)
    try:
        return text_encoder(input_ids=input_ids.to(emb.weight.device))[0]
    finally:
        if handle is not None:
            handle.remove()


# -- token files ------------------------------------------------------------------------------------
def save_token(path: str | os.PathLike, mapper: StyleMapper, **meta) -> None:
    """Write the mapper and metadata (strings or JSON-able values) atomically."""
    from safetensors.torch import save_file

    from cellxfer.atomic import atomic_path

    metadata = {"format": TOKEN_FORMAT, "mapper": json.dumps(mapper.spec)}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in mapper.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_token(path: str | os.PathLike) -> tuple[StyleMapper, dict]:
    """``(mapper in eval mode, metadata)`` from a token file or a ``learn-style`` run folder;
    :class:`InputError` when it is not one."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = resolve_token(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a safetensors file ({exc}); --token needs a file written by `cellxfer learn-style`") from None
    if meta.get("format") != TOKEN_FORMAT:
        raise InputError(f"{path}: not a cellxfer InST token (format {meta.get('format')!r}); write one with `cellxfer learn-style`")
    spec = json.loads(meta["mapper"])
    mapper = StyleMapper(**spec)
    try:
        mapper.load_state_dict(tensors)
    except RuntimeError as exc:
        raise InputError(f"{path}: token tensors do not match its own metadata ({str(exc).splitlines()[0]}); retrain it") from None
    return mapper.eval(), meta
