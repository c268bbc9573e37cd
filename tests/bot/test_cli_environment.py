"""The process-wide settings `chatbot` makes before the first tensor exists, by command."""

import pytest

from bot import cli


def test_the_serving_benchmark_alone_runs_without_huge_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(cli, "use_huge_pages", lambda: asked.append(True))
    monkeypatch.setattr(cli, "load_settings", lambda: (_ for _ in ()).throw(RuntimeError("stop here")))
    for argv, wanted in ((["bench", "infer"], []), (["train", "--data", "x.tsv", "--out", "m"], [True])):
        asked.clear()
        with pytest.raises(RuntimeError, match="stop here"):
            cli.main(argv)
        assert asked == wanted
