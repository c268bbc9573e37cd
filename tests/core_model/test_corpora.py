from pathlib import Path

import pytest

from core_model.corpora import CorpusError, Pair, bundled_corpus, load_pairs


def test_tsv_with_optional_context(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("prompt\treply\tcontext\n안녕\t반가워\t\nhi  there\tyo\tbefore\n\t\tskipped\n", encoding="utf-8")
    assert load_pairs([path]) == [Pair("안녕", "반가워"), Pair("hi there", "yo", "before")]


def test_csv_with_q_and_a_columns(tmp_path: Path) -> None:
    path = tmp_path / "ChatbotData.csv"
    path.write_text('Q,A,label\n"배고파, 진짜",밥 드세요,0\n', encoding="utf-8")
    assert load_pairs([path]) == [Pair("배고파, 진짜", "밥 드세요")]


def test_yaml_conversations_become_consecutive_pairs(tmp_path: Path) -> None:
    path = tmp_path / "talk.yml"
    path.write_text("categories: [x]\nconversations:\n- - a\n  - b\n  - c\n", encoding="utf-8")
    assert load_pairs([path]) == [Pair("a", "b"), Pair("b", "c", "a")]


def test_a_tsv_from_a_spreadsheet_reads_alike(tmp_path: Path) -> None:
    path = tmp_path / "export.tsv"  # a byte-order mark and Windows line ends
    path.write_bytes("\ufeffprompt\treply\r\n안녕\t반가워\r\n".encode())
    assert load_pairs([path]) == [Pair("안녕", "반가워")]


def test_bundled_corpus_has_english_and_korean() -> None:
    pairs = bundled_corpus()
    assert len(pairs) > 1000
    assert any("\uac00" <= ch <= "\ud7a3" for p in pairs for ch in p.reply)
    assert any(p.reply.isascii() for p in pairs)
    assert len(set(pairs)) == len(pairs)  # the package's many repeats are read once


def test_bundled_corpus_knows_what_people_ask_a_chatbot_first() -> None:
    replies = {p.prompt: p.reply for p in bundled_corpus()}
    assert "chatbot" in replies["What is your name?"] and "챗봇" in replies["이름이 뭐야?"]
    assert replies["Bye"].startswith("Bye") and replies["고마워"] == "천만에요!"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.tsv", "question\tanswer\nx\ty\n", "first line"),
    ("bad.tsv", "prompt\treply\nno tab here\n", "bad.tsv:2"),
    ("bad.csv", "foo,bar\n1,2\n", "Q and A"),
    ("bad.yml", "just: [a mapping]\n", "conversations"),
    ("bad.yml", "conversations: [\n", "unreadable"),
    ("bad.json", "{}", "unknown corpus format"),
])
def test_bad_files_are_named(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message) as error:
        load_pairs([path])
    assert str(path) in str(error.value)


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("prompt\treply\ncaf\xe9\tok\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="latin1.tsv"):
        load_pairs([path])


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="missing.tsv: no such file"):
        load_pairs([tmp_path / "missing.tsv"])
