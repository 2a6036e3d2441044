"""Wire models: Paris time → UTC, lenient number/string types, redacted links (§2, §7)."""

from __future__ import annotations

from datetime import datetime, timezone

from fichierfs.models import AccountInfo, DownloadLink, FileUrl, FolderListing, UploadedFile, paris_to_utc


def test_paris_time_to_utc_both_seasons() -> None:
    assert paris_to_utc("2026-07-01 12:00:00") == datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc)  # CEST
    assert paris_to_utc("2026-01-15 12:00:00") == datetime(2026, 1, 15, 11, 0, tzinfo=timezone.utc)  # CET
    assert paris_to_utc("") is None and paris_to_utc(None) is None and paris_to_utc("1970-01-01 00:00:00") is None


def test_listing_types_and_lenient_numbers() -> None:
    d = {"folder_id": "7", "name": "x", "sub_folders": None,
         "items": [{"url": "https://1fichier.com/?a", "filename": "f", "size": "12", "date": "2026-03-01 10:00:00",
                    "checksum": "ABC", "content-type": "text/plain", "pass": 0, "acl": 0, "cdn": 0}]}
    listing = FolderListing.from_json(d, 7)
    assert listing.folder_id == 7 and listing.sub_folders == ()
    (f,) = listing.files
    assert f.size == 12 and f.checksum == "abc" and f.content_type == "text/plain" and f.folder_id == 7


def test_end_pl_size_is_a_string() -> None:
    up = UploadedFile.from_json({"download": "https://1fichier.com/?b", "filename": "n", "size": "14",
                                 "whirlpool": "FF", "remove": ""})
    assert up.size == 14 and up.whirlpool == "ff"


def test_account_info_rclone_reading() -> None:
    info = AccountInfo.from_json({"email": "a@b", "offer": "1", "cold_storage": 100, "available_cold_storage": 1000,
                                  "hot_storage": 100, "upload_forbidden": "0"})
    assert (info.used, info.total, info.free, info.upload_forbidden) == (100, 1000, 900, False)


def test_download_link_is_redacted() -> None:
    link = DownloadLink(url="https://a-1.1fichier.com/p123456", file_url=FileUrl("https://1fichier.com/?c"))
    assert "p123456" not in repr(link)
