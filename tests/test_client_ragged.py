"""A request split over the server's max batch whose chunks come back with different widths (issue 13
item 5): merge_outputs pads every chunk to the widest with the output's pad value.

Units for the merge, then real tokenizer output through the real local Triton: the demo's WordPiece
tokenizer (pads with 0) and a byte-level BPE tokenizer served by the bundle's tokenizer model with
RoBERTa's pad id 1, which the client reads from the model's config.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triton_bundle.client.batching import default_pad, merge_outputs
from triton_bundle.client.client import AsyncTritonClient, ClientOptions, TritonClient
from triton_bundle.client.errors import RaggedOutputError
from triton_bundle.client.metadata import ModelMetadata
from triton_bundle.repository import contract

HELDOUT = Path(__file__).resolve().parents[1] / "examples" / "minilm-intent" / "data" / "heldout.jsonl"


def _padded(rows: list[list[int]], width: int, pad: int, dtype=np.int64) -> np.ndarray:
    out = np.full((len(rows), width), pad, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _chunked_like_a_tokenizer(rows: list[list[int]], size: int, pad: int) -> list[dict[str, np.ndarray]]:
    """What the server returns per chunk: each chunk padded to its own longest row."""
    parts = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        width = max(len(r) for r in chunk)
        parts.append(
            {
                "input_ids": _padded(chunk, width, pad),
                "attention_mask": _padded([[1] * len(r) for r in chunk], width, 0),
            }
        )
    return parts


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=30),
    size=st.integers(1, 8),
    pad=st.sampled_from([0, 1, -100]),
)
def test_ragged_chunks_merge_into_rows_padded_to_the_widest(lengths: list[int], size: int, pad: int) -> None:
    rows = [list(range(10, 10 + n)) for n in lengths]
    merged = merge_outputs(_chunked_like_a_tokenizer(rows, size, pad), {"input_ids": pad})
    width = max(lengths)
    np.testing.assert_array_equal(merged["input_ids"], _padded(rows, width, pad))
    np.testing.assert_array_equal(merged["attention_mask"].sum(axis=1), lengths)
    assert merged["input_ids"].dtype == np.int64


def test_token_level_float_and_bytes_outputs_pad_with_zero_and_empty_bytes() -> None:
    logits = [np.ones((2, 3, 4), np.float32), np.full((1, 5, 4), 2.0, np.float32)]
    words = [np.array([[b"a", b"b"]], dtype=object), np.array([[b"c"], [b"d"]], dtype=object)]
    merged = merge_outputs(
        [{"logits": logits[0], "words": words[0]}, {"logits": logits[1], "words": words[1]}]
    )
    assert merged["logits"].shape == (3, 5, 4)
    assert (merged["logits"][:2, 3:] == 0).all() and (merged["logits"][2] == 2).all()
    assert merged["words"].tolist() == [[b"a", b"b"], [b"c", b""], [b"d", b""]]
    assert default_pad(np.dtype(bool)) is False


def test_equal_widths_are_concatenated_unchanged_and_mismatched_ranks_are_named() -> None:
    parts = [{"x": np.arange(6).reshape(3, 2)}, {"x": np.arange(4).reshape(2, 2)}]
    np.testing.assert_array_equal(merge_outputs(parts)["x"], np.concatenate([p["x"] for p in parts]))
    with pytest.raises(RaggedOutputError, match=r"output 'x' came back with shapes \[3, 2\], \[2\]"):
        merge_outputs([{"x": np.zeros((3, 2))}, {"x": np.zeros(2)}])


_TOKENIZER_METADATA = {
    "name": "m_tokenizer",
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}],
    "outputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
    ],
}


@pytest.mark.parametrize("key", ["string_value", "stringValue"])  # HTTP JSON, protobuf JSON
def test_metadata_reads_the_tokenizers_pad_id_from_its_config(key: str) -> None:
    config = {"max_batch_size": 8, "parameters": {"pad_id": {key: "1"}, "max_length": {key: "64"}}}
    assert ModelMetadata.from_server(_TOKENIZER_METADATA, config).pad_values == {"input_ids": 1}
    assert ModelMetadata.from_server(_TOKENIZER_METADATA, {"max_batch_size": 8}).pad_values == {}


# ------------------------------------------------------------------------------- real Triton, real tokenizers


def _heldout_texts(count: int) -> list[str]:
    lines = HELDOUT.read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    # Short and long texts interleaved so that every chunk has its own longest row.
    texts.sort(key=len)
    return [t for pair in zip(texts[: count // 2], texts[::-1][: count // 2], strict=True) for t in pair]


def _expected(tokenizer_json: Path, texts: list[str], max_length: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return [e.ids for e in tokenizer.encode_batch(texts)]


def _check_ids(result_ids: np.ndarray, mask: np.ndarray, expected: list[list[int]], pad: int) -> None:
    width = max(len(ids) for ids in expected)
    assert result_ids.shape == (len(expected), width)
    np.testing.assert_array_equal(result_ids, _padded(expected, width, pad))
    np.testing.assert_array_equal(mask.sum(axis=1), [len(ids) for ids in expected])


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_demo_tokenizer_output_over_the_servers_max_batch_merges(
    demo_server, demo_repository, protocol
) -> None:
    """The demo's BERT WordPiece tokenizer (max_batch_size 32): 40 texts go as 32 + 8, and with a client cap
    of 6 as seven chunks, each padded by the server to its own longest text."""
    model = contract.tokenizer_model("minilm-intent")
    texts = _heldout_texts(40)
    expected = _expected(demo_repository / model / "1" / "tokenizer.json", texts, 128)
    url = f"{protocol}://{demo_server.http_url if protocol == 'http' else demo_server.grpc_url}"
    column = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)
    for cap in (None, 6):
        with TritonClient(url, options=ClientOptions(max_batch_size=cap)) as client:
            assert client.model_metadata(model).max_batch_size == 32
            result = client.infer_tensors(model, {contract.TEXT_INPUT: column})
        _check_ids(result["input_ids"], result["attention_mask"], expected, pad=0)


@pytest.fixture(scope="module")
def bpe_tokenizer_server(tmp_path_factory: pytest.TempPathFactory):
    """The bundle's tokenizer model serving a byte-level BPE tokenizer (RoBERTa's layout: <s>=0,
    <pad>=1, </s>=2), trained here on the demo's held-out texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from tritonclient.grpc import model_config_pb2 as mc

    from triton_bundle.repository import configs
    from triton_bundle.repository.layout import ModelFiles, python_model_source, write_repository
    from triton_bundle.repository.options import RepositoryOptions
    from triton_bundle.repository.tensors import TensorInfo
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    root = tmp_path_factory.mktemp("bpe")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [json.loads(line)["text"] for line in HELDOUT.read_text(encoding="utf-8").splitlines()]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer_json = root / "tokenizer.json"
    tokenizer.save(str(tokenizer_json))

    ids = tuple(TensorInfo(n, mc.TYPE_INT64, (-1, -1)) for n in (contract.INPUT_IDS, contract.ATTENTION_MASK))
    settings_ = configs.TokenizerSettings(
        max_length=64, min_length=1, padding="longest", bucket_size=16, pad_id=1, outputs=ids
    )
    config = configs.tokenizer_config("bpe_tokenizer", RepositoryOptions(max_batch_size=4), settings_)
    files = {"1/model.py": python_model_source("text_tokenizer"), "1/tokenizer.json": tokenizer_json}
    repository = write_repository(root / "repo", [ModelFiles(config, files)])
    with LocalTriton(ServerConfig(repository=repository, log_file=root / "triton.log")) as server:
        yield server, tokenizer_json


@pytest.mark.slow
def test_bpe_tokenizer_chunks_pad_with_the_pad_id_from_the_models_config(bpe_tokenizer_server) -> None:
    server, tokenizer_json = bpe_tokenizer_server
    texts = _heldout_texts(18)
    expected = _expected(tokenizer_json, texts, 64)
    column = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)

    async def run() -> dict[str, np.ndarray]:
        async with AsyncTritonClient(f"grpc://{server.grpc_url}") as client:
            assert (await client.model_metadata("bpe_tokenizer")).pad_values == {"input_ids": 1}
            return (await client.infer_tensors("bpe_tokenizer", {contract.TEXT_INPUT: column})).outputs

    outputs = asyncio.run(run())
    _check_ids(outputs["input_ids"], outputs["attention_mask"], expected, pad=1)
    # An explicit pad value wins over the config's where the client pads (the server padded with 1).
    with TritonClient(server.http_url) as client:
        result = client.infer_tensors(
            "bpe_tokenizer", {contract.TEXT_INPUT: column}, pad_values={"input_ids": 7}
        )
    mask = result["attention_mask"]
    assert set(np.unique(result["input_ids"][mask == 0]).tolist()) == {1, 7}
    for row, ids in enumerate(expected):
        assert result["input_ids"][row, : len(ids)].tolist() == ids
