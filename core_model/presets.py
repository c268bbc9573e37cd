"""Named model and training configurations; command-line options override single fields."""

from __future__ import annotations

from core_model.config import ModelConfig, TrainConfig

PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    # What `chatbot train` and the bundled default model use unless told otherwise. On Korean in a
    # 600 s budget (one thread), one layer of 384 scored greedy chrF 14.5 against 11.3 for two
    # layers of 256, at the same speed (24 epochs against 25); one layer of 512, or embeddings of
    # 384, were slower and no better. Reply quality keeps rising for many epochs after the
    # validation loss first turns up, hence the long patience. Deleting a third of the prompt
    # tokens as well as hiding a fifth behind <unk> gave chrF 15.3 against 13.6 with hiding alone
    # (deleting a fifth: 14.6, a half: 14.0), and 2.69 bits/char against 2.87. Shuffling the prompt
    # as well (tokens moved up to 3 places) was no better: 18.7 against 16.0 with one seed, 16.3
    # against 17.9 with another (two runs of one setting differ by as much, hence the pairs).
    # Spelling each prompt token with its characters and character pairs (core_model/spelling.py)
    # gave chrF 20.7 and 19.4 against 17.1 and 18.2 for subwords alone (two seeds, 600 s, one
    # thread each), and 2.57 against 2.65 bits/char. A moving average of the weights (--ema 0.998)
    # gave 17.9 with it; more dropout lowered bits/char but not chrF (0.2: 17.7, 0.3: 15.5), and
    # deleting a fifth or a half of the prompt tokens instead of 0.35 scored 17.6 and 18.1 (one seed).
    # On a bf16 machine with the character tokenizer (600 s, one thread, seed 1234, against 16.7 and
    # 17.5 for the defaults): a vocabulary of 4,000 gave better bits/char (2.52 against 2.61) but
    # chrF 14.0; batches of 32 gave 16.9; no dropout 17.8 at 2.71 bits/char; no label smoothing 16.7
    # at 3.26 bits/char. None is a clear gain, so the defaults stay.
    "default": (
        ModelConfig(vocab_size=8000, embedding_dim=256, hidden_size=384, num_layers=1, dropout=0.1,
                    lowercase_prompts=True, prompt_spelling=8000),
        TrainConfig(batch_size=64, learning_rate=2e-3, warmup_steps=200, label_smoothing=0.1, patience=10,
                    select_by="reply_chrf", source_token_dropout=0.2, source_token_deletion=0.35),
    ),
    # PyTorch's Chatbot Tutorial: hidden 500, embeddings 500, 2 layers, batch 64, dropout 0.1.
    "tutorial": (
        ModelConfig(vocab_size=8000, embedding_dim=500, hidden_size=500, num_layers=2, dropout=0.1),
        TrainConfig(batch_size=64, learning_rate=1e-3, warmup_steps=100, label_smoothing=0.1),
    ),
    # Seconds on a laptop: for tests and smoke runs.
    "tiny": (
        ModelConfig(vocab_size=400, embedding_dim=32, hidden_size=64, num_layers=1, dropout=0.0,
                    max_source_tokens=32, max_target_tokens=24),
        TrainConfig(batch_size=16, learning_rate=5e-3, warmup_steps=10, label_smoothing=0.0, patience=100),
    ),
}
