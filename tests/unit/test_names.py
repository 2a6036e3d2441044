"""Name encoding is reversible and matches rclone's fichier mapping (§7)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fichierfs.names import NameError_, decode, encode

FORBIDDEN = '\\<>"\'$`'


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("a<b>.txt", "a\uff1cb\uff1e.txt"),
        ('q"uote', "q\uff02uote"),
        ("it's", "it\uff07s"),
        ("$HOME", "\uff04HOME"),
        ("back`tick", "back\uff40tick"),
        ("c:\\dir", "c:\uff3cdir"),
        (" lead", "\u2420lead"),
        ("trail ", "trail\u2420"),
        ("mid dle", "mid dle"),
        ("tab\there", "tab\u2409here"),
        ("del\x7f", "del\u2421"),
        ("\uff1calready", "\u201b\uff1calready"),
        ("quote\u201b", "quote\u201b\u201b"),
        ("été 日本", "été 日本"),
    ],
)
def test_known_mappings(local: str, remote: str) -> None:
    assert encode(local) == remote
    assert decode(remote) == local


def test_encoded_names_have_no_forbidden_characters() -> None:
    enc = encode(" " + FORBIDDEN + "x ")
    assert not any(c in enc for c in FORBIDDEN)
    assert not enc.startswith(" ") and not enc.endswith(" ")


def test_too_long_and_invalid() -> None:
    with pytest.raises(NameError_) as e:
        encode("x" * 251)
    assert e.value.errno == errno.ENAMETOOLONG
    assert encode("x" * 250) == "x" * 250
    with pytest.raises(NameError_) as e:
        encode("bad\udcff")
    assert e.value.errno == errno.EINVAL


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=60)


@given(names)
def test_round_trip(name: str) -> None:
    if name in (".", ".."):
        return
    assert decode(encode(name)) == name


def test_length_counts_characters_not_bytes() -> None:
    """§7: 250 characters. 85 '€' (255 bytes) and 90 Japanese characters are fine now."""
    for name in ("€" * 85, "日本語のファイル名" * 10, "Привет" * 41 + "абвг", "x" * 250, "é" * 127):
        assert len(name) <= 250
        assert decode(encode(name)) == name
    with pytest.raises(NameError_) as e:
        encode("ж" * 251)
    assert e.value.errno == errno.ENAMETOOLONG
    assert "251 characters" in str(e.value) and "250" in str(e.value)
    # quoting counts: 249 chars + one reserved char that needs no quote = 250 → ok; a quoted one → 251
    assert len(encode("a" * 249 + "<")) == 250
    with pytest.raises(NameError_):
        encode("a" * 249 + "\u201b")


def test_acute_accent_is_encoded_and_round_trips() -> None:
    """´ (U+00B4) is refused by 1fichier (§7): before, a file named with it was retried forever."""
    from fichierfs.emulator.rules import FORBIDDEN_CHARS

    assert "\u00b4" in FORBIDDEN_CHARS
    assert encode("caf\u00b4e") == "caf\u02cae"
    assert not any(c in FORBIDDEN_CHARS for c in encode("\u00b4x\u00b4"))
    for name in ("\u00b4", "x\u02cay", "a\u02ca\u00b4b"):
        assert decode(encode(name)) == name
