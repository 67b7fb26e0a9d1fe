import hashlib

from ops_pipelines.archives.digests import DigestSet, hex_of, packed


def test_digests_round_trip_and_membership_including_trailing_zero_bytes():
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    zero_ended = "ab" * 31 + "00"  # numpy drops an S32 value's trailing zero bytes
    hexes.append(zero_ended)
    assert [hex_of(d) for d in packed(hexes)] == hexes
    present = DigestSet(reversed(hexes))
    assert len(present) == 51 and all(h in present for h in hexes)
    assert "ab" * 31 + "01" not in present and "ab" * 32 not in present and "00" * 32 not in present
    assert "ff" * 32 not in DigestSet([])
