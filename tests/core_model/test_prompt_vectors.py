import numpy as np
import torch

from core_model.decoding import encode
from core_model.model import Seq2Seq
from core_model.prompt_vectors import prompt_vectors, start_vectors
from core_model.tokenizer import Tokenizer
from tests.conftest import PAIRS

PROMPTS = [p.prompt for p in PAIRS]


def test_each_prompt_gets_a_unit_vector_and_one_that_tokenizes_to_nothing_a_zero_one(
        trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    vectors = prompt_vectors(trained, tokenizer, [*PROMPTS, ""])
    assert vectors.shape == (len(PROMPTS) + 1, trained.config.hidden_size) and vectors.dtype == np.float16
    norms = np.linalg.norm(vectors.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms[:-1], 1.0, atol=1e-3)
    assert norms[-1] == 0.0


def test_a_prompts_vector_does_not_depend_on_the_prompts_beside_it(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    together = prompt_vectors(trained, tokenizer, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(prompt_vectors(trained, tokenizer, [prompt])[0], together[i], atol=2e-3)


def test_a_requests_vector_from_its_encoding_is_the_memorys_vector_of_the_same_prompt(
        trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    # replies.py takes a request's vector from the encoding its decoding starts from
    sources = [tokenizer.encode(prompt) for prompt in PROMPTS]
    with torch.inference_mode():
        from_encoding = start_vectors(encode(trained, sources).state).numpy()
    np.testing.assert_allclose(from_encoding, prompt_vectors(trained, tokenizer, PROMPTS), atol=2e-3)
    # different prompts are told apart
    assert float(from_encoding[0] @ from_encoding[3]) < 0.99
