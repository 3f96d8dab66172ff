"""The finetune stage for text-generation: a GPT-2-style decoder trained from scratch on the spec's texts
(or a local causal-LM checkpoint fine-tuned on them). Writes `<workdir>/checkpoint/` (safetensors,
config, tokenizer.json) and a "finetune" manifest record with held-out perplexity.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.data import load_texts
from triton_bundle.errors import BundleError
from triton_bundle.finetune_record import FinetuneDetails, FinetuneRecord
from triton_bundle.hf import quiet_offline
from triton_bundle.manifest import Manifest
from triton_bundle.progress import progress_bar
from triton_bundle.spec import ModelSpec, ScratchLMSpec


class LMTrainingError(BundleError):
    pass


def scratch_model(cfg: ScratchLMSpec, tokenizer):
    """A GPT-2-style decoder sized by the spec, for the tokenizer's vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.context,
        n_embd=cfg.hidden,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _batches(tokenizer, texts: list[str], batch_size: int, max_length: int, shuffle: bool):
    """Tokenized batches: each text ends with the end-of-text token; padding is ignored by the loss."""
    order = list(range(len(texts)))
    if shuffle:
        random.shuffle(order)
    for start in range(0, len(order), batch_size):
        chunk = [texts[i] + tokenizer.eos_token for i in order[start : start + batch_size]]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        # The first end-of-text is a real target even though it shares the pad id.
        lengths = enc["attention_mask"].sum(1)
        labels[range(len(chunk)), (lengths - 1).clamp(min=0)] = enc["input_ids"][
            range(len(chunk)), (lengths - 1).clamp(min=0)
        ]
        yield enc, labels


def heldout_loss(model, tokenizer, texts: list[str], max_length: int) -> float:
    """Mean next-token cross-entropy over the held-out texts (nats per token)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for enc, labels in _batches(tokenizer, texts, 32, max_length, shuffle=False):
            out = model(**enc, labels=labels)
            n = int((labels[:, 1:] != -100).sum())
            total += float(out.loss) * n
            count += n
    return total / max(count, 1)


def _load_or_create(spec: ModelSpec, train_texts: list[str]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from triton_bundle.finetune import resolve_base_model
    from triton_bundle.generation.tokenizer import train_bpe_tokenizer

    cfg = spec.finetune
    if cfg.scratch is not None:
        tokenizer = train_bpe_tokenizer(train_texts, cfg.scratch.vocab_size)
        return scratch_model(cfg.scratch, tokenizer), tokenizer, "scratch"
    base = resolve_base_model(cfg.base_model, spec.base_dir)
    from triton_bundle.export.loaders import check_model_files

    check_model_files(base, spec.source.allow_pickle)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        base, use_safetensors=None if spec.source.allow_pickle else True
    )
    return model, tokenizer, str(base)


def finetune_causal_lm(spec: ModelSpec, workdir: Path, force: bool = False):
    """Train the decoder on spec.data.train; save it with its tokenizer; record held-out perplexity."""
    import torch

    from triton_bundle.finetune import FinetuneResult

    quiet_offline()
    cfg = spec.finetune
    if cfg is None:
        raise LMTrainingError("the spec has no 'finetune' section")
    target = Path(workdir) / "checkpoint"
    check_overwrite(target, force)
    train = load_texts(spec.resolve(spec.data.train), spec.data.text_field, None).texts
    heldout = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, tokenizer, base = _load_or_create(spec, train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=steps)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    # A decoder this small spends more time syncing threads than computing (2 threads: 8x slower seen).
    torch.set_num_threads(1)
    with progress_bar("training decoder", total=steps) as advance:
        for _epoch in range(cfg.epochs):
            model.train()
            for enc, labels in _batches(tokenizer, train, cfg.batch_size, cfg.max_length, shuffle=True):
                loss = model(**enc, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                advance(1, f"loss {loss.item():.3f}")
    torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    loss = heldout_loss(model, tokenizer, heldout, cfg.max_length)

    with atomic_path(target, force=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    manifest = Manifest.load(workdir, spec.name)
    metrics = {"heldout_perplexity": math.exp(loss), "train_seconds": seconds, "train_examples": len(train)}
    manifest.record(
        FinetuneRecord(
            artifacts={"checkpoint": target.resolve()},
            metrics=metrics,
            details=FinetuneDetails(base_model=base, parameters=sum(p.numel() for p in model.parameters())),
        )
    )
    manifest.save(workdir)
    return FinetuneResult(target.resolve(), [], len(train), math.exp(-loss), seconds, math.exp(loss))
