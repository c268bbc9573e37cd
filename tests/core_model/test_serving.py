from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from core_model import serving
from core_model.batching import source_ids
from core_model.config import DecodeConfig
from core_model.decoding import generate
from core_model.model import Seq2Seq
from core_model.pipeline import new_model
from core_model.replies import reply_texts
from core_model.serving import load_for_serving, packed_for_serving
from core_model.tokenizer import Tokenizer
from tests.conftest import PAIRS, TINY_MODEL

GREEDY = DecodeConfig(strategy="greedy", no_repeat_ngram=0)


def _sources(tokenizer: Tokenizer) -> list[list[int]]:
    return [tokenizer.encode(p.prompt) for p in PAIRS]


def test_packed_model_gives_the_same_distributions(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    packed = packed_for_serving(trained)
    src = torch.tensor([tokenizer.encode(PAIRS[0].prompt)])
    tgt = torch.tensor([[1] + tokenizer.encode(PAIRS[0].reply)])
    with torch.inference_mode():
        exact, _ = trained.eval()(src, torch.tensor([src.size(1)]), tgt)
        served, _ = packed(src, torch.tensor([src.size(1)]), tgt)
    assert torch.allclose(exact.softmax(-1), served.softmax(-1), atol=1e-2)
    assert generate(packed, _sources(tokenizer), GREEDY) == generate(trained, _sources(tokenizer), GREEDY)


def test_the_packed_model_calls_its_kernels_directly_with_the_same_results(
        trained: Seq2Seq, tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = packed_for_serving(trained)
    monkeypatch.setattr(serving, "_call_kernels_directly", lambda model: None)
    through_torch = packed_for_serving(trained)  # torch's dynamic quantized modules
    assert isinstance(direct.decoder, serving._Fp16Gru) and isinstance(direct.output, serving._Fp16Linear)
    assert not isinstance(through_torch.output, serving._Fp16Linear)
    src = pad_sequence([torch.tensor(source) for source in _sources(tokenizer)], batch_first=True)  # PAD_ID 0
    lengths = (src != 0).sum(dim=1)
    tgt = torch.tensor([[1, 5, 6]] * src.size(0))
    with torch.inference_mode():
        assert torch.equal(direct(src, lengths, tgt)[0], through_torch(src, lengths, tgt)[0])
        memory, state = through_torch.encode(src, lengths)
        ours, theirs = (model.decode_step(tgt[:, 1], state, memory) for model in (direct, through_torch))
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])  # logits, state


def test_a_packed_reply_does_not_depend_on_its_batch(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    packed = packed_for_serving(trained)
    sources = _sources(tokenizer)
    together = generate(packed, sources, GREEDY)
    assert together == [generate(packed, [source], GREEDY)[0] for source in sources]


def test_a_served_reply_does_not_depend_on_its_batch(model_dir: Path, tokenizer: Tokenizer) -> None:
    # as the bot replies: the memory's neighbours ranked with the prompts' vectors, then guided decoding
    loaded = load_for_serving(model_dir)
    assert loaded.memory is not None and loaded.memory.has_vectors
    sources = [tokenizer.encode(text) for text in
               [p.prompt for p in PAIRS] + ["hello how are you", "배고파요 오늘", "what is the weather"]]
    # and after a turn (the prompt is encoded alone for its vector), then one sharing no character
    sources += [source_ids(tokenizer, prompt, context, loaded.model.config)
                for prompt, context in (("배고파요 오늘", "hello there"), ("how are you", "커피 좋아해?"), ("🦄", ""))]
    together = reply_texts(loaded.model, tokenizer, sources, DecodeConfig(), loaded.memory)
    assert together == [reply_texts(loaded.model, tokenizer, [source], DecodeConfig(), loaded.memory)[0]
                        for source in sources]
    assert all(together[: len(PAIRS)]) and together[-1] == ""


def test_packing_leaves_the_trained_model_alone(trained: Seq2Seq, model_dir: Path) -> None:
    before = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    loaded = load_for_serving(model_dir)
    assert loaded.model is not trained and trained.output is None
    assert all(torch.equal(before[name], tensor) for name, tensor in trained.state_dict().items())



def test_a_spelled_prompt_is_embedded_by_the_served_table_to_the_bit(tokenizer: Tokenizer) -> None:
    model = new_model(replace(TINY_MODEL, prompt_spelling=400), tokenizer).eval()
    packed = packed_for_serving(model)
    assert packed.prompt_table is not None and model.prompt_table is None
    src = pad_sequence([torch.tensor(source) for source in _sources(tokenizer)], batch_first=True)  # PAD_ID 0
    with torch.inference_mode():
        assert torch.equal(packed.embed_prompt(src), model.embed_prompt(src))
