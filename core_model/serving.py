"""A model prepared for decoding only: its matrices packed in half precision for the CPU kernels.

Decoding one reply multiplies small activations by large weight matrices (the output projection
over the whole vocabulary above all), so its speed is the speed of reading the weights from
memory. fbgemm's fp16 kernels read half as many bytes and compute in fp32, and each row of a batch
is computed independently of the others: a reply does not depend on what it was batched with.
(int8 dynamic quantization is faster still but scales activations per batch, which does.)
"""

from __future__ import annotations

import copy
import gc
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from core_model import checkpoint
from core_model.batching import source_ids
from core_model.checkpoint import LoadedModel
from core_model.model import Seq2Seq
from core_model.prompt_vectors import prompt_vectors
from core_model.reply_memory import ReplyMemory


def packed_for_serving(model: Seq2Seq, *, in_place: bool = False) -> Seq2Seq:
    """model in eval mode with its linear layers and RNNs packed as fp16 weights: a copy, unless
    in_place (the caller has no further use for the fp32 model, and memory is saved)."""
    serving = (model if in_place else copy.deepcopy(model)).eval()
    if serving.spelling_embedding is not None:
        # A token's prompt embedding depends on its id alone: one lookup in a table of them all
        # (8 MB for 8,000 tokens of 256) replaces the spelling's gather and bag mean, 60 us of each
        # reply's encoding (290 us for 64 prompts), with the same values to the bit.
        with torch.inference_mode():
            serving.prompt_table = serving.embed_prompt(torch.arange(model.config.vocab_size).unsqueeze(0))[0]
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return serving  # no packed kernels on this CPU: serve in fp32
    output = nn.Linear(model.config.embedding_dim, model.config.vocab_size)
    output.weight = nn.Parameter(serving.embedding.weight.detach().clone(), requires_grad=False)
    output.bias = nn.Parameter(serving.output_bias.detach().clone(), requires_grad=False)
    serving.output = output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager-mode API's notice that torchao is its successor
        torch.ao.quantization.quantize_dynamic(serving, {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.float16,
                                               inplace=True)
    _call_kernels_directly(serving)
    return serving


class _Fp16Linear(nn.Module):
    """A linear layer packed as fp16 weights, calling fbgemm's kernel directly."""

    def __init__(self, quantized: torch.ao.nn.quantized.dynamic.Linear) -> None:
        super().__init__()
        self.packed = quantized._packed_params._packed_params

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic_fp16(x, self.packed)


class _Fp16Gru(nn.Module):
    """The decoder's GRU packed as fp16 weights, calling its kernel directly (inputs batch first,
    never a PackedSequence: the decoder gets none)."""

    def __init__(self, quantized: torch.ao.nn.quantized.dynamic.GRU) -> None:
        super().__init__()
        self.weights = [packed.param for packed in quantized._all_weight_values]
        self.bias, self.layers = quantized.bias, quantized.num_layers

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return torch.quantized_gru(x, state, self.weights, self.bias, self.layers, 0.0, False, False, True)


def _call_kernels_directly(serving: Seq2Seq) -> None:
    """Replace torch's dynamic quantized modules on the decoder's path by ones calling the same
    kernels directly: torch's check their arguments and settings in Python at every call, 30 us of
    a decoder step's 420 for 5 rows. The same replies to the bit; beam-5 replies of the default
    model 3% faster (in one process, alternating prompt by prompt: 21.32 ms against 22.02 at the
    median). The encoder keeps torch's GRU, which also takes the PackedSequence of a batch."""
    for name, module in list(serving.named_modules()):
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            parent, _, attribute = name.rpartition(".")
            setattr(serving.get_submodule(parent), attribute, _Fp16Linear(module))
    if isinstance(serving.decoder, torch.ao.nn.quantized.dynamic.GRU):
        serving.decoder = _Fp16Gru(serving.decoder)  # type: ignore[assignment]  # serving only calls it


def load_for_serving(path: Path | str) -> LoadedModel:
    """A model folder loaded (errors name the bad file) and packed for decoding, its memory's index
    built and its replies tokenised (here, not at the first reply)."""
    loaded = checkpoint.load(path)
    serving = packed_for_serving(loaded.model, in_place=True)
    return replace(loaded, model=serving, memory=served_memory(loaded, serving))


def served_source(loaded: LoadedModel, prompt: str, context: str) -> list[int]:
    """The encoder's input for a request: its context only if the model learned from contexts."""
    return source_ids(loaded.tokenizer, prompt, context if loaded.reads_context else "", loaded.model.config)


def served_memory(loaded: LoadedModel, model: Seq2Seq) -> ReplyMemory | None:
    """The model folder's memory as decoding with model (loaded's, packed or not) uses it: indexed,
    its replies tokenised, its prompts' vectors computed by model (0.8 s for
    10,575 Korean prompts, 3.5 s for 12,927 longer English ones, on one thread: see prompt_vectors)."""
    if loaded.memory is None:
        return None
    return loaded.memory.indexed(loaded.tokenizer.encode,
                                 lambda prompts: prompt_vectors(model, loaded.tokenizer, prompts))


def keep_collector_off_live_objects() -> None:
    """Exempt every object alive now (a loaded model, its tokenizer, the imported libraries, a
    bot's chat clients) from Python's cyclic garbage collector. A full collection scans every
    tracked object while holding the GIL: over a few hundred thousand of them it stalls every
    thread, the event loop included, for 100 ms and more. These objects live as long as the
    process, so scanning them finds nothing. (Objects frozen this way are still freed by reference
    counting when dropped, e.g. after a swap.)
    """
    gc.freeze()
