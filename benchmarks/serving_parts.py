"""Where a reply's serving time goes: the encoder, the neighbours' lookup, the guides and the
decoding, for prompts one at a time and in batches, as core_model/replies.py runs them on one
thread with the model packed for serving (`chatbot bench infer` times the whole through the engine).

    python benchmarks/serving_parts.py MODEL_DIR ../shared/data/korean_chatbot/valid.tsv [--batch 64] [--prompts 512]

Prints one JSON object: mean milliseconds per batch for each part, alone (batch 1) and batched,
how many decoder calls a batch made, and `batching_ceiling`: one prompt's time alone over the
encoder's and the lookup's time per prompt in the batch, the most that batching could gain per
prompt even if the batch's decoding cost nothing. (The lookup sums each prompt's own postings, and
the encoder runs each prompt's own tokens: in a batch they cost less per prompt, but not nothing.)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from core_model import replies
from core_model.batching import source_ids
from core_model.config import DecodeConfig
from core_model.corpora import load_pairs
from core_model.decoding import encode, generate_as_done, reply_limit
from core_model.guidance import guide
from core_model.reranking import NEIGHBOURS
from core_model.serving import load_for_serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_for_serving(args.model)
    model, tokenizer, memory = loaded.model, loaded.tokenizer, loaded.memory
    if memory is None or not memory.has_vectors:
        raise SystemExit(f"{args.model}: no memory with prompt vectors to time")
    pairs = load_pairs([args.data])[: args.prompts]
    sources = [source_ids(tokenizer, p.prompt, p.context, model.config) for p in pairs]
    decoder_calls = 0
    decode = model.decode

    def counted(*call: Any) -> Any:
        nonlocal decoder_calls
        decoder_calls += 1
        return decode(*call)

    model.decode = counted  # type: ignore[method-assign,assignment]
    config = DecodeConfig()
    limit = reply_limit(model, config)

    def parts(batch: list[list[int]]) -> Iterator[tuple[str, Callable[[], Any]]]:
        state: dict[str, Any] = {}
        yield "encoder", lambda: state.update(encoded=encode(model, batch))
        yield "lookup", lambda: state.update(neighbours=memory.nearest_each(
            [replies._prompt(tokenizer, source) for source in batch], NEIGHBOURS,
            replies._vectors(model, state["encoded"], batch)))
        yield "guides", lambda: state.update(guides=[guide(tokenizer, n) for n in state["neighbours"]])
        yield "decoding", lambda: [replies.reply_text(tokenizer, ids, limit) for done in generate_as_done(
            model, batch, config, state["guides"], state["encoded"]) for _, ids in done]

    result: dict[str, Any] = {"model": args.model, "prompts": len(sources)}
    for size in (1, args.batch):
        batches = [sources[i : i + size] for i in range(0, len(sources), size) if all(sources[i : i + size])]
        for batch in batches[:2]:  # warm-up
            for _, run in parts(batch):
                run()
        totals: dict[str, float] = defaultdict(float)
        decoder_calls = 0
        for batch in batches:
            for name, run in parts(batch):
                began = time.perf_counter()
                run()
                totals[name] += time.perf_counter() - began
        result[f"batch_{size}_ms"] = {name: round(total / len(batches) * 1000, 3) for name, total in totals.items()}
        result[f"batch_{size}_ms"]["total"] = round(sum(totals.values()) / len(batches) * 1000, 3)
        result[f"batch_{size}_decoder_calls"] = round(decoder_calls / len(batches), 2)
    alone, batched = result["batch_1_ms"], result[f"batch_{args.batch}_ms"]
    per_prompt = (batched["encoder"] + batched["lookup"]) / args.batch
    result["batching_ceiling"] = round(alone["total"] / per_prompt, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
