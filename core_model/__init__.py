"""The Seq2Seq brain: tokenizer, model, training, decoding, checkpoints and the inference engine."""
