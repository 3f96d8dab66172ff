"""Find a model's transformer blocks, attention projections and FFN by module structure, not by name.

A layout names the attribute paths inside one block. A model is supported when it holds an
`nn.ModuleList` of `config.num_hidden_layers` blocks that all match one layout; BERT, RoBERTa,
MiniLM and ELECTRA share the first layout, DistilBERT has its own.
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
        for layout in LAYOUTS:
            if all(_matches(block, layout) for block in module):
                ffn = getattr(config, layout.ffn_config, None)
                head_size = module[0].get_submodule(layout.query).out_features // heads
                if ffn is None:
                    continue
                return Located(layout, path, layers, heads, head_size, int(ffn))
    expected = "; or ".join(layout.name for layout in LAYOUTS)
    raise UnsupportedFamilyError(
        f"cannot locate the transformer layers of {what}: expected an nn.ModuleList of "
        f"config.num_hidden_layers={layers} blocks, each with {expected}"
    )
