"""Reply characters/s of PyTorch's Chatbot Tutorial training procedure, for comparison.

The tutorial's habits, reproduced on purpose: word-level vocabulary, a bidirectional GRU encoder
whose directions are summed, a Luong "dot" attention decoder stepped one token per Python
iteration, softmax followed by a hand-made NLL, two Adam optimizers, clipping at 50.
Hidden 500, embeddings 500, 2 layers, batch 64, as in the tutorial.

    python benchmarks/tutorial_baseline.py ../shared/data/korean_chatbot/train.tsv [--steps 20] [--min-count 3]

By default every pair of at most ten words (the tutorial's limit) is used: 10,412 of the 10,575
Korean pairs that `chatbot bench train` trains on.
The tutorial also drops words seen fewer than three times and every pair holding one
(`--min-count 3`): on the Korean corpus that keeps 1,273 of 10,575 pairs, shorter ones, and a
vocabulary of 2,697 instead of 20,179, so it processes two to three times the characters per second
of another workload.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from core_model.corpora import load_pairs

H, LAYERS, BATCH, MAX_WORDS = 500, 2, 64, 10
PAD, SOS, EOS = 0, 1, 2


class Encoder(nn.Module):
    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(H, H, LAYERS, dropout=0.1, bidirectional=True)

    def forward(self, seqs, lengths):  # type: ignore[no-untyped-def]
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(seqs), lengths, enforce_sorted=False)
        outputs, hidden = self.gru(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs)
        return outputs[:, :, :H] + outputs[:, :, H:], hidden


class Decoder(nn.Module):
    def __init__(self, embedding: nn.Embedding, vocab: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(0.1)
        self.gru = nn.GRU(H, H, LAYERS, dropout=0.1)
        self.concat = nn.Linear(2 * H, H)
        self.out = nn.Linear(H, vocab)

    def forward(self, step, hidden, encoder_outputs):  # type: ignore[no-untyped-def]
        output, hidden = self.gru(self.dropout(self.embedding(step)), hidden)
        weights = F.softmax(torch.sum(output * encoder_outputs, dim=2).t(), dim=1).unsqueeze(1)
        context = weights.bmm(encoder_outputs.transpose(0, 1)).squeeze(1)
        concat = torch.tanh(self.concat(torch.cat((output.squeeze(0), context), 1)))
        return F.softmax(self.out(concat), dim=1), hidden


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--min-count", type=int, default=1, help="drop pairs holding a rarer word (tutorial: 3)")
    args = parser.parse_args()
    random.seed(0)
    torch.manual_seed(0)
    pairs = [p for p in load_pairs([args.data])
             if len(p.prompt.split()) < MAX_WORDS and len(p.reply.split()) < MAX_WORDS]
    counts = Counter(w for p in pairs for w in (p.prompt + " " + p.reply).split())
    pairs = [p for p in pairs if all(counts[w] >= args.min_count for w in (p.prompt + " " + p.reply).split())]
    words = {w for p in pairs for w in (p.prompt + " " + p.reply).split()}
    index = {w: i + 3 for i, w in enumerate(sorted(words))}
    embedding = nn.Embedding(len(index) + 3, H)
    encoder, decoder = Encoder(embedding), Decoder(embedding, len(index) + 3)
    enc_opt = torch.optim.Adam(encoder.parameters(), lr=1e-4)
    dec_opt = torch.optim.Adam(decoder.parameters(), lr=5e-4)
    chars, seconds = 0, 0.0
    for step in range(args.steps + 2):
        batch = random.sample(pairs, BATCH)
        src = [[index[w] for w in p.prompt.split()] + [EOS] for p in batch]
        tgt = [[index[w] for w in p.reply.split()] + [EOS] for p in batch]
        lengths = torch.tensor([len(s) for s in src])
        inp = nn.utils.rnn.pad_sequence([torch.tensor(s) for s in src])  # [S, B]
        target = nn.utils.rnn.pad_sequence([torch.tensor(t) for t in tgt])  # [T, B]
        mask = target != PAD
        began = time.perf_counter()
        enc_opt.zero_grad()
        dec_opt.zero_grad()
        outputs, hidden = encoder(inp, lengths)
        dec_in, dec_hidden = torch.full((1, BATCH), SOS), hidden[:LAYERS]
        loss, total = torch.zeros(()), 0
        for t in range(target.size(0)):
            probs, dec_hidden = decoder(dec_in, dec_hidden, outputs)
            dec_in = target[t].view(1, -1)  # teacher forcing
            nll = -torch.log(torch.gather(probs, 1, target[t].view(-1, 1)).squeeze(1))
            loss = loss + nll.masked_select(mask[t]).mean() * mask[t].sum()
            total += int(mask[t].sum())
        (loss / total).backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), 50.0)
        nn.utils.clip_grad_norm_(decoder.parameters(), 50.0)
        enc_opt.step()
        dec_opt.step()
        if step >= 2:
            seconds += time.perf_counter() - began
            chars += sum(len(p.reply) for p in batch)
    print(json.dumps({"procedure": "pytorch-chatbot-tutorial", "steps": args.steps, "min_count": args.min_count,
                      "pairs": len(pairs), "vocab": len(index) + 3,
                      "train_seconds": round(seconds, 3), "target_chars_per_s": round(chars / seconds, 1)}))


if __name__ == "__main__":
    main()
