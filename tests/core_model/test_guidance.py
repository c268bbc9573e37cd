import itertools
import math
from dataclasses import replace

import pytest
import torch

from core_model.config import DecodeConfig
from core_model.decoding import candidates, generate
from core_model.guidance import Guide, GuideRows, guide
from core_model.model import Seq2Seq
from core_model.replies import reply_texts
from core_model.reply_memory import Neighbour, ReplyMemory
from core_model.reranking import SHARPNESS
from core_model.serving import packed_for_serving
from core_model.tokenizer import EOS_ID, GO_ID, PAD_ID, Tokenizer
from tests.conftest import PAIRS, TINY_MODEL

GREEDY = DecodeConfig(strategy="greedy", no_repeat_ngram=0, neighbour_share=0.5)
BEAM = replace(GREEDY, strategy="beam", beam_width=3)
V = 12


def _rows(*replies: tuple[list[int], float]) -> GuideRows:
    return GuideRows.of([list(replies)])


def test_mix_pulls_towards_the_replies_the_reply_so_far_begins() -> None:
    uniform = torch.full((1, V), 1 / V).log()
    rows = _rows(([5, 6, EOS_ID], 0.75), ([5, 7, EOS_ID], 0.25))
    at_start = rows.mix(uniform, 0.5).exp()[0]
    assert at_start[5] == pytest.approx(0.5 / V + 0.5)  # both replies begin with 5
    assert at_start[6] == pytest.approx(0.5 / V)
    after_5 = rows.advance(torch.tensor([5])).mix(uniform, 0.5).exp()[0]
    assert after_5[6] == pytest.approx(0.5 / V + 0.5 * 0.75) and after_5[7] == pytest.approx(0.5 / V + 0.5 * 0.25)
    assert after_5.sum() == pytest.approx(1.0)
    # the reply has left the second neighbour's: the share is the first's alone
    ending = rows.advance(torch.tensor([5])).advance(torch.tensor([6])).mix(uniform, 0.5).exp()[0]
    assert ending[EOS_ID] == pytest.approx(0.5 / V + 0.5) and ending.sum() == pytest.approx(1.0)


def test_the_last_neighbour_followed_outweighs_a_model_that_wants_to_stop() -> None:
    # Three neighbours of similar weight; the model gives <eos> half its probability at every step.
    log_probs = torch.full((1, V), 0.5 / (V - 1)).index_fill_(1, torch.tensor([EOS_ID]), 0.5).log()
    rows = _rows(([5, 6, 7, EOS_ID], 0.4), ([5, 8, EOS_ID], 0.35), ([9, EOS_ID], 0.25))
    reply = []
    while not reply or reply[-1] != EOS_ID:
        reply.append(int(rows.mix(log_probs.clone(), 0.5).argmax()))
        rows = rows.advance(torch.tensor(reply[-1:]))
    assert reply == [5, 6, 7, EOS_ID]  # the whole reply, not one cut short


def test_mix_leaves_the_model_alone_once_the_reply_departs_from_every_neighbour() -> None:
    log_probs = torch.randn(1, V).log_softmax(dim=-1)
    rows = _rows(([5, 6, EOS_ID], 1.0))
    departed = rows.advance(torch.tensor([4]))
    past_the_end = rows
    for token in (5, 6, EOS_ID, 3):
        past_the_end = past_the_end.advance(torch.tensor([token]))
    for guides in (departed, past_the_end, departed.advance(torch.tensor([6]))):  # never to come back
        assert not guides.active
        assert torch.equal(guides.mix(log_probs, 0.5), log_probs)


def test_a_token_the_guides_give_over_half_the_mixture_is_the_greedy_choice_whatever_the_model_says() -> None:
    rows = GuideRows.of([[([5, 6, EOS_ID], 1.0)],  # one reply followed: bound to it
                         [([5, 6, EOS_ID], 0.5), ([7, EOS_ID], 0.5)],  # split: the model decides
                         [([5, 6, EOS_ID], 0.45), ([5, 8, EOS_ID], 0.45), ([9, EOS_ID], 0.1)],  # two agree on 5
                         []])  # no neighbour
    for share, bound in ((0.6, [5, -1, 5, -1]), (0.5, [-1, -1, -1, -1])):  # at most one half: never bound
        assert rows.forced(share).tolist() == bound
        for row, token in enumerate(bound):
            if token >= 0:  # even a model sure of another token does not outweigh it
                sure = torch.full((1, V), -30.0).index_fill_(1, torch.tensor([3]), 0.0).log_softmax(dim=-1)
                assert int(rows.select(torch.tensor([row])).mix(sure, share).argmax()) == token
    after = rows.advance(torch.tensor([5, 7, 5, 4]))
    assert after.forced(0.6).tolist() == [6, EOS_ID, -1, -1]  # the third row now splits 0.5 / 0.5
    assert rows.advance(torch.tensor([4, 4, 4, 4])).forced(0.6).tolist() == [-1, -1, -1, -1]  # none followed


def test_a_reply_is_bound_to_its_end_while_the_replies_it_follows_go_on_alike() -> None:
    rows = GuideRows.of([[([5, 6, EOS_ID], 1.0)],
                         [([5, 6, EOS_ID], 0.6), ([5, 6, EOS_ID], 0.4)],  # the same reply twice
                         [([5, 6, EOS_ID], 0.9), ([5, 7, EOS_ID], 0.1)],  # bound to 5, then the model decides
                         []])
    assert rows.bound_rests(0.6) == [[5, 6, EOS_ID], [5, 6, EOS_ID], None, None]
    assert rows.bound_rests(0.5) == [None] * 4  # a share of one half binds nothing
    after = rows.advance(torch.tensor([5, 5, 5, 5])).advance(torch.tensor([6, 6, 6, 6]))
    assert after.bound_rests(0.6) == [[EOS_ID], [EOS_ID], [EOS_ID], None]  # the third left the other reply


def test_a_reply_is_bound_once_the_token_its_near_reply_binds_leaves_the_far_ones_behind() -> None:
    rows = GuideRows.of([[([5, 6, EOS_ID], 0.9), ([4, 7, EOS_ID], 0.1)],  # 5 is bound, and the far reply left
                         [([5, 6, EOS_ID], 0.7), ([4, 6, EOS_ID], 0.3)],  # 0.6 * 0.7 < 1/2: the model decides
                         [([EOS_ID], 0.9), ([4, EOS_ID], 0.1)],  # bound to end at once
                         [([5, 6, EOS_ID], 0.8), ([5, 7, EOS_ID], 0.1), ([4, EOS_ID], 0.1)]])  # 5, then a split
    assert rows.bound_rests(0.6) == [[5, 6, EOS_ID], None, [EOS_ID], None]


@pytest.mark.parametrize("max_length", [2, GREEDY.max_length])
def test_replies_the_guides_bind_to_their_end_are_written_without_the_decoder(
        tokenizer: Tokenizer, max_length: int) -> None:
    model = _untrained(tokenizer)
    decoded = 0
    decode = model.decode

    def counted(*args: object) -> object:
        nonlocal decoded
        decoded += 1
        return decode(*args)  # type: ignore[arg-type]

    model.decode = counted  # type: ignore[method-assign]
    sources = [tokenizer.encode(p.prompt) for p in PAIRS[:3]]
    follow = [tokenizer.encode(p.reply) for p in PAIRS[3:6]]
    guides = [[(ids + [EOS_ID], 1.0)] for ids in follow]
    config = replace(GREEDY, neighbour_share=0.6, max_length=max_length)
    expected = [ids[:max_length] for ids in follow]
    assert generate(model, sources, config, guides) == expected  # a batch
    assert decoded == 0
    # and one by one
    assert [generate(model, [s], config, [g])[0] for s, g in zip(sources, guides, strict=True)] == expected
    assert decoded == 0
    # a reply whose <eos> the guides bind before min_length is left to the model, alone as in a batch
    short = replace(config, min_length=max(len(ids) for ids in follow) + 1)
    assert [generate(model, [s], short, [g])[0] for s, g in zip(sources, guides, strict=True)] == \
        generate(model, sources, short, guides) and decoded > 0


def test_rows_without_neighbours_are_padded_and_pull_nowhere() -> None:
    rows = GuideRows.of([[([5, EOS_ID], 1.0)], []])
    assert rows.replies.tolist() == [[[5, EOS_ID]], [[PAD_ID, PAD_ID]]] and rows.pulls.tolist() == [[1.0], [0.0]]
    log_probs = torch.randn(2, V).log_softmax(dim=-1)
    mixed = rows.mix(log_probs, 0.3)
    assert torch.allclose(mixed[1], log_probs[1])  # the model's distribution, unscaled
    assert mixed[0].exp().sum() == pytest.approx(1.0) and mixed[0, 5].exp() == pytest.approx(0.7 * log_probs[0, 5].exp() + 0.3)
    assert rows.select(torch.tensor([1, 1, 0])).pulls.tolist() == [[0.0], [0.0], [1.0]]


def test_guide_weights_nearer_neighbours_more(tokenizer: Tokenizer) -> None:
    near, far = Neighbour(0.9, "배고파", "뭐 좀 드세요."), Neighbour(0.9 / 2 ** (1 / SHARPNESS), "졸려", "푹 자요.")
    (near_ids, near_weight), (far_ids, far_weight) = guide(tokenizer, [near, far])
    assert near_ids == tokenizer.encode(near.reply) + [EOS_ID] and far_ids[-1] == EOS_ID
    assert near_weight + far_weight == pytest.approx(1.0) and near_weight == pytest.approx(2 * far_weight)
    assert guide(tokenizer, []) == [] and guide(tokenizer, [Neighbour(0.0, "a", "b")]) == []
    # token ids the memory already holds are used as they are
    assert guide(tokenizer, [Neighbour(0.9, "배고파", "뭐 좀 드세요.", [7, 8])]) == [([7, 8, EOS_ID], 1.0)]


def _untrained(tokenizer: Tokenizer) -> Seq2Seq:
    torch.manual_seed(3)
    return Seq2Seq(replace(TINY_MODEL, vocab_size=tokenizer.vocab_size)).eval()


@pytest.mark.parametrize("config", [GREEDY, BEAM, replace(GREEDY, strategy="sample", seed=5)])
def test_a_strong_guide_has_the_decoder_write_the_neighbours_reply(tokenizer: Tokenizer, config: DecodeConfig) -> None:
    model = _untrained(tokenizer)  # whose own replies are noise
    sources = [tokenizer.encode(p.prompt) for p in PAIRS]
    guides = [guide(tokenizer, [Neighbour(1.0, p.prompt, p.reply)]) for p in PAIRS]
    strong = replace(config, neighbour_share=0.999999)  # sampling strays with a chance of 1e-6 a token
    assert [tokenizer.decode(r) for r in generate(model, sources, strong, guides)] == [p.reply for p in PAIRS]
    # no share, or no guide: the model's own replies
    unguided = generate(model, sources, replace(config, neighbour_share=0.0))
    assert generate(model, sources, replace(config, neighbour_share=0.0), guides) == unguided
    assert generate(model, sources, strong, [[] for _ in sources]) == unguided
    assert unguided != generate(model, sources, strong, guides)


@pytest.mark.parametrize("config", [GREEDY, BEAM, replace(GREEDY, strategy="sample", seed=5)])
def test_a_neighbours_reply_that_repeats_itself_is_followed_to_its_end(tokenizer: Tokenizer,
                                                                      config: DecodeConfig) -> None:
    model = _untrained(tokenizer)
    with torch.no_grad():
        model.output_bias[EOS_ID] = -1e4
        model.output_bias[10] = 1e4  # the model wants token 10 forever
    refrain = [20, 21, 22, 20, 21, 22, 23]  # repeats the 3-gram 20 21 22
    sources = [tokenizer.encode(p.prompt) for p in PAIRS[:2]]
    # sampling strays with a chance of 1e-6 a token
    blocking = replace(config, no_repeat_ngram=3, neighbour_share=0.999999, max_length=8)
    # one prompt alone
    assert generate(model, sources[:1], blocking, [[(refrain + [EOS_ID], 1.0)]]) == [refrain]
    # and a batch, whose other prompt follows no neighbour: its reply still may not repeat itself
    following, alone = generate(model, sources, blocking, [[(refrain + [EOS_ID], 1.0)], []])
    assert following == refrain
    trigrams = list(zip(alone, alone[1:], alone[2:], strict=False))
    assert alone[:2] == [10, 10] and len(alone) == 8 and len(trigrams) == len(set(trigrams))


@pytest.mark.parametrize("config", [GREEDY, BEAM])
def test_guided_batched_decode_equals_one_by_one(trained: Seq2Seq, tokenizer: Tokenizer, config: DecodeConfig) -> None:
    sources = [tokenizer.encode(p.prompt) for p in PAIRS] + [[]]
    # each prompt guided by another's reply, the last ones not at all
    guides = [guide(tokenizer, [Neighbour(0.8, "", PAIRS[(i + 1) % len(PAIRS)].reply)]) for i in range(len(PAIRS) - 1)]
    guides += [[], []]
    together = generate(trained, sources, config, guides)
    assert together == [generate(trained, [s], config, [g])[0] for s, g in zip(sources, guides, strict=True)]


def _guided_by_two_others(tokenizer: Tokenizer) -> tuple[list[list[int]], list[Guide]]:
    """PAIRS' prompts, each guided by two other prompts' replies, which its own reply leaves at
    various points."""
    n = len(PAIRS)
    sources = [tokenizer.encode(p.prompt) for p in PAIRS]
    guides = [guide(tokenizer, [Neighbour(0.9, "", PAIRS[(i + 1) % n].reply), Neighbour(0.88, "", PAIRS[(i + 3) % n].reply)])
              for i in range(n)]
    return sources, guides


def test_one_guided_greedy_reply_is_the_one_it_gets_in_a_batch(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    # Replies that follow a neighbour's part of the way, leave it, and end at different steps: the
    # rows leaving the batch must not change the others'.
    sources, guides = _guided_by_two_others(tokenizer)
    served = packed_for_serving(trained)  # as the bot decodes: fp16 matrices
    left_part_way = 0
    for share, max_length in itertools.product((0.2, 0.4, 0.6), (GREEDY.max_length, 4)):
        config = replace(GREEDY, neighbour_share=share, max_length=max_length)
        for model in (trained, served):
            step_by_step = generate(model, sources, config, guides)
            assert [generate(model, [s], config, [g])[0] for s, g in zip(sources, guides, strict=True)] == step_by_step
        for reply, followed in zip(step_by_step, guides, strict=True):
            for ids, _ in followed:
                shared = next((k for k, (a, b) in enumerate(zip(reply, ids, strict=False)) if a != b), None)
                left_part_way += shared is not None and shared > 0
    assert left_part_way  # some replies took a neighbour's first tokens, then left it


def test_guided_greedy_reply_is_the_one_a_search_of_width_one_finds(trained: Seq2Seq, tokenizer: Tokenizer) -> None:
    # The default beam search looks greedy's reply up among its own candidates by that reply alone
    # (core_model/replies.py), so greedy decoding and a search of width 1 must agree to the token.
    sources, guides = _guided_by_two_others(tokenizer)
    for base, share, max_length in itertools.product((GREEDY, DecodeConfig()), (0.2, 0.6), (GREEDY.max_length, 4)):
        greedy = replace(base, strategy="greedy", neighbour_share=share, max_length=max_length)
        for model in (trained, packed_for_serving(trained)):
            found = candidates(model, sources, replace(greedy, strategy="beam", beam_width=1), guides)
            alone = [candidates(model, [s], replace(greedy, strategy="beam", beam_width=1), [g])[0]
                     for s, g in zip(sources, guides, strict=True)]
            assert [h.ids for h, in found] == generate(model, sources, greedy, guides)
            assert [[h.ids for h in hypotheses] for hypotheses in alone] == [[h.ids for h in f] for f in found]


def test_a_guided_batch_does_not_end_a_reply_before_its_minimum_length(tokenizer: Tokenizer) -> None:
    # the neighbours' one-token replies bind the next token to <eos>, which is not allowed yet
    model = _untrained(tokenizer)
    sources = [tokenizer.encode(p.prompt) for p in PAIRS[:3]]
    guides = [[([tokenizer.encode(p.reply)[0], EOS_ID], 1.0)] for p in PAIRS[:3]]
    replies = generate(model, sources, replace(GREEDY, neighbour_share=0.9, min_length=3, no_repeat_ngram=0), guides)
    assert [len(reply) >= 3 for reply in replies] == [True] * 3
    assert [reply[0] for reply in replies] == [ids[0] for (ids, _), in guides]  # the neighbours' first token


def test_hypothesis_scores_are_the_guided_mixtures_log_probability_length_normalised(tokenizer: Tokenizer) -> None:
    model = _untrained(tokenizer)
    sources = [tokenizer.encode(p.prompt) for p in PAIRS[:3]]
    guided_by = [tokenizer.encode(p.reply) + [EOS_ID] for p in PAIRS[:3]]
    guides = [[(ids, 1.0)] for ids in guided_by]
    kinds = set()
    for share in (0.0, 0.9):
        config = replace(BEAM, neighbour_share=share, max_length=8)
        for source, follow, hypotheses in zip(sources, guided_by, candidates(model, sources, config, guides),
                                              strict=True):
            for h in hypotheses:
                ended = len(h.ids) < config.max_length  # else cut, without an <eos>
                targets = h.ids + [EOS_ID] if ended else h.ids
                expected = _mixture_log_prob(model, source, targets, follow, share)
                assert h.score == pytest.approx(expected / ((5 + len(targets)) / 6) ** config.length_penalty, abs=1e-4)
                kinds.add((share, ended))
    assert {(0.0, False), (0.9, True), (0.9, False)} <= kinds  # unguided and guided, ended and cut


def _mixture_log_prob(model: Seq2Seq, source: list[int], targets: list[int], follow: list[int], share: float) -> float:
    """The log-probability of targets when each step mixes the model's distribution with a pull of
    weight share towards the next token of `follow`, as long as the targets so far are its beginning
    (the model's distribution alone after)."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([source]), torch.tensor([len(source)]), torch.tensor([[GO_ID] + targets[:-1]]))
    probs = logits[0].float().softmax(dim=-1)
    total, following = 0.0, True
    for step, token in enumerate(targets):
        p = float(probs[step, token])
        total += math.log((1 - share) * p + share * (step < len(follow) and follow[step] == token) if following else p)
        following = following and step < len(follow) and follow[step] == token
    return total


REWORDED = ["hello there!", "how are you doing", "what's your name?", "안녕하세요~", "배고파요", "오늘 날씨는 어때?",
            "good night", "커피 좋아해요?"]


def test_default_replies_follow_the_replies_of_the_nearest_prompts(tokenizer: Tokenizer) -> None:
    model = _untrained(tokenizer)
    memory = ReplyMemory([p.prompt for p in PAIRS], [p.reply for p in PAIRS])
    sources = [tokenizer.encode(prompt) for prompt in REWORDED]
    replies = [p.reply for p in PAIRS]
    assert reply_texts(model, tokenizer, sources, DecodeConfig(), memory) == replies
    # Beam search's reranking weighs this model's own (random) log-probabilities too, which may
    # prefer a candidate that goes on for a token or two.
    reranked = reply_texts(model, tokenizer, sources, DecodeConfig(strategy="beam"), memory)
    assert all(text.startswith(reply) for text, reply in zip(reranked, replies, strict=True))
    for unguided in (reply_texts(model, tokenizer, sources, DecodeConfig()),  # no memory
                     reply_texts(model, tokenizer, sources, DecodeConfig(neighbour_share=0.0), memory)):
        assert not any(text.startswith(reply) for text, reply in zip(unguided, replies, strict=True))
