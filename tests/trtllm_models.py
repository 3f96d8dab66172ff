"""Tiny random decoders (GPT-2, Llama: 2 layers, hidden 32) with a trained byte-level BPE tokenizer,
saved as safetensors checkpoints, for the TensorRT-LLM repository tests."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

PROMPTS = [
    "Thanks for reaching out, your order ships today.",
    "Please reset your password from the sign-in page.",
    "Your refund will appear within five business days.",
] * 20


def _tokenizer() -> Tokenizer:
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(PROMPTS, trainer)
    return tok


def tiny_decoder(root: Path, family: str) -> Path:
    """A tiny random decoder of the family (2 layers, hidden 32) with its tokenizer, saved as safetensors."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    eos = tok.token_to_id("<|endoftext|>")
    if family == "gpt2":
        config = GPT2Config(
            vocab_size=300,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            eos_token_id=eos,
            bos_token_id=eos,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=128, eos_token_id=eos, bos_token_id=eos,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
    path = root / family
    model.save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    return path
