"""Find a model's transformer blocks, attention projections and FFN by module structure, not by name.

A layout names the attribute paths inside one block. A model is supported when it holds an
`nn.ModuleList` of `config.num_hidden_layers` blocks that all match one layout. BERT, RoBERTa,
MiniLM and ELECTRA share the first known layout, DistilBERT has its own; any other family is read from
its blocks' linear layers (`infer_layout`): three hidden -> hidden projections (query, key, value)
then one more (the attention output), and one hidden -> F -> hidden pair (the FFN) whose width F a
config field holds. MPNet and DeBERTa-v2/v3 are found this way.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from triton_bundle.compress.errors import UnsupportedFamilyError


@dataclass(frozen=True)
class BlockLayout:
    name: str
    query: str
    key: str
    value: str
    attn_out: str  # its input is the concatenated heads
    ffn_in: str
    ffn_out: str  # its input is the FFN neurons
    ffn_config: str  # the config field holding the FFN width


LAYOUTS = (
    BlockLayout(
        name="attention.self.{query,key,value} + attention.output.dense + intermediate.dense + output.dense",
        query="attention.self.query",
        key="attention.self.key",
        value="attention.self.value",
        attn_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        ffn_config="intermediate_size",
    ),
    BlockLayout(
        name="attention.{q_lin,k_lin,v_lin,out_lin} + ffn.lin1 + ffn.lin2",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attn_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        ffn_config="hidden_dim",
    ),
)


# Config fields that hold the FFN width, by family; the one whose value is the measured width is used.
FFN_WIDTH_FIELDS = ("intermediate_size", "hidden_dim", "ffn_dim", "encoder_ffn_dim", "d_ff", "n_inner")


def infer_layout(block: nn.Module, config) -> BlockLayout | None:
    """The layout of `block` read from its nn.Linear layers in registration order, or None when they
    are not exactly q, k, v, attention output (all hidden -> hidden) and an FFN pair (hidden -> F ->
    hidden, F != hidden): fused QKV, gated FFNs or extra projections are not guessed at."""
    hidden = next(
        (getattr(config, f) for f in ("hidden_size", "dim", "d_model") if getattr(config, f, None)), None
    )
    linears = [(path, m) for path, m in block.named_modules() if isinstance(m, nn.Linear)]
    if hidden is None or len(linears) != 6:
        return None
    square = [path for path, m in linears[:4] if (m.in_features, m.out_features) == (hidden, hidden)]
    (ffn_in_path, ffn_in), (ffn_out_path, ffn_out) = linears[4:]
    width = ffn_in.out_features
    ffn_shape = (ffn_in.in_features, ffn_out.in_features, ffn_out.out_features)
    if len(square) != 4 or width == hidden or ffn_shape != (hidden, width, hidden):
        return None
    field = next((f for f in FFN_WIDTH_FIELDS if getattr(config, f, None) == width), None)
    if field is None:
        return None
    query, key, value, attn_out = square
    return BlockLayout(
        name=f"read from the blocks: {query}, {key}, {value} + {attn_out} + {ffn_in_path} + {ffn_out_path}",
        query=query,
        key=key,
        value=value,
        attn_out=attn_out,
        ffn_in=ffn_in_path,
        ffn_out=ffn_out_path,
        ffn_config=field,
    )


@dataclass(frozen=True)
class Located:
    """Where the blocks are in one model instance, and the sizes that pruning changes."""

    layout: BlockLayout
    list_path: str  # dotted path of the ModuleList of blocks
    layers: int
    heads: int
    head_size: int
    ffn: int

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.list_path)

    def linear(self, block: nn.Module, part: str) -> nn.Linear:
        return block.get_submodule(getattr(self.layout, part))


def _matches(block: nn.Module, layout: BlockLayout) -> bool:
    parts = (layout.query, layout.key, layout.value, layout.attn_out, layout.ffn_in, layout.ffn_out)
    for path in parts:
        try:
            module = block.get_submodule(path)
        except AttributeError:
            return False
        if not isinstance(module, nn.Linear):
            return False
    return True


def locate(model: nn.Module) -> Located:
    """The blocks of `model`, or UnsupportedFamilyError naming what was looked for."""
    config = model.config
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    what = f"{type(model).__name__} (model_type '{getattr(config, 'model_type', '?')}')"
    if not layers or not heads:
        raise UnsupportedFamilyError(
            f"cannot compress {what}: its config has no num_hidden_layers / num_attention_heads"
        )
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != layers:
            continue
        inferred = infer_layout(module[0], config)
        for layout in (*LAYOUTS, *([inferred] if inferred else [])):
            if all(_matches(block, layout) for block in module):
                ffn = getattr(config, layout.ffn_config, None)
                head_size = module[0].get_submodule(layout.query).out_features // heads
                if ffn is None:
                    continue
                return Located(layout, path, layers, heads, head_size, int(ffn))
    expected = "; or ".join(layout.name for layout in LAYOUTS)
    raise UnsupportedFamilyError(
        f"cannot locate the transformer layers of {what}: expected an nn.ModuleList of "
        f"config.num_hidden_layers={layers} blocks, each with {expected}; or, in any family, exactly six "
        "linear layers per block: query, key, value and attention output (hidden -> hidden), then an FFN "
        f"(hidden -> F -> hidden, F in one of the config fields {', '.join(FFN_WIDTH_FIELDS)})"
    )
