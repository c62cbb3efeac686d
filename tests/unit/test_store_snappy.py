"""The snappy reader (ZooKeeper's snapshot.compression.method=snappy) against bytes written by
snappy-java's SnappyOutputStream (the library ZooKeeper uses), and hand-made blocks for the
element kinds its compressor never emits (4-byte offsets, literals with long lengths)."""

from __future__ import annotations

import pytest

from corral.store.snappy import SnappyError, decompress_block, decompress_stream

# SnappyOutputStream(out, 65536) from snappy-java 1.1.8.3 (Debian) written with: TEXT, then
# NOISE twice (the repeat is a copy with a 2-byte offset), then 5,000 zero bytes (an
# overlapping copy); made once with Java, kept as is.
SNAPPY_JAVA = bytes.fromhex(
    "82534e4150505900000000010000000100000ab5a467307a6e6f64652d302f646174613b090d00312e0d0000322e0d00"
    "00332e0d0000342e0d0000352e0d0000362e0d0000372e0d0000382e0d0000392e0d0000313683003284000031328500"
    "00313286000031328700003132880000313289003661002e7c00325f00325e00325d00325c00325b00fee400fee400fe"
    "e400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fe"
    "e400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fe"
    "e400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fee400fe"
    "e400fee400fee400fee400fee400fee400fee400bae400f43d08c67e816b4bfbe2fb54f6bddf7c1ce18701bf31de5672"
    "0f4767668759aa883c59ea56137bd285a1d83c54552f37ae655bda027998cce31a768e5fd9998f1f3f36ee43784d0dfa"
    "bea6dae4868edc296d4eff56e17020fb8fb1580590c509dc53cdaa3b489952d3529d069feab5c206139849b2011eac32"
    "88319c52469571368f57f6391d16fa8874f5987c175c41bb6d718e0f7059c7011b2f333d91c01da50d0dab338d7e5e8f"
    "3ee66874a63ab1c39311a864c7dbcae060e1f3bf090067a2e325a0213187d562c5a84f7e2e096b949fb06da99e5a0b46"
    "7080b6cf470ca6a52ad8acfba0ebb779247223924880c5a6a785b7d78c90e4ab63445266e39c3325f95eaaba73605d4b"
    "717ebea98c571971c3ca5ee52a33ac885166a17b7567649a69ef6f5642a01d51c502f7bb9245be6f0db638cc10fdbb54"
    "511c7b079427937d92c3d4c6a56151013838a7bff1040d159b801f83d5a469887c9fb601da9317458b12b202335c50d6"
    "e156a4ad424a5cdd8661e90312e10f9bea262c61dc62486b6d14e003854a7246da96c87d1cd1053ee59270435f6c0305"
    "b3ebb320354d7e66500136c033e10fc9382ee929194f5eb1d1498b3b53fd9f3fee2525357b0d11af4c118c32d4da7fd8"
    "1657e1a6ce7dc1ae62bf13e4874c3ac1b30c599947585abd787cba5001ed1bea8a4988eed61485abb02cde3593112d01"
    "1cd7284330e7b008ed79991351d23a77ad3db4f8c7ca0322d2c9c6270f04ce7a3fc0682ccf726a09c24200725e4134f8"
    "96693fbd3a58918be1cca2b192dd77a135fef34bbcb1e337110dc765bef161e55e06ff35c776895df46e4accb5547ef1"
    "15c8a0998f5c700bef14c6e50a9c19b41d4cce5606dc421125e7966f0f213ddff957470ddf2b6afc778dd5e9d9f9b5e0"
    "eb72841a8e42141d8a6e5f923afb0be5f6e4c09f45d62a83bfb1cd6ac4bf8cdedfb2f779f76057fc3b3d7b2ecb9c417b"
    "27a5e34858150717e0b9855f63a8f6291243006adbee6424528bc43b5dbb3518a2d389ffb2a05930f2dbd5c14d6a4b36"
    "9c5d78e6d0a3920de59011b0860f413480a689bde92f78470d5095871bbfe37f943736e46f39382f0c833a85df51bc48"
    "d956bb799579bdd448509da9655d177c130b125c4f67b004e19e18b3003afecbc41cf72b50387e4ebb13c520c3fe3da4"
    "300fe4470ae452017a17813180805f355a2d15ccb022152d80d1e6e4cc58af6f057d859c356a74a0f0284ff7f9dc3800"
    "b3c4ee544ef1d9eaadc2d7eb1924c456a88bcb546baf70585a0759fe0006dfa1e61859bac15b23fc5b1e7030421ad4d0"
    "32729066426c9da2d1ed773e30b6ae920d612ef6a21a49dba11d89a8def23856ba6babca535a53f66d1381ae1fa5fc4a"
    "3dd7450189e4a40098f6fb4d8664465f59acf579362feaca46af50466689214291b176d20d728de358e39c17d1285863"
    "276e446b82a4ba9873fabbff9c1a76f21f299962c87c5bfbf91a46fd59f6c5db3ce97196d0711cd80d2c99d05a1251d0"
    "007587a84fba66c092d5d0f7b486e53faf5555f5b84e66012c7dc4b238280c564bcf179c3de407ab3c4a12fe7b901106"
    "99eac77dd1f3f28ce725149cce14fefc196d213728b294330fb3e40a45cb9fa811e09f29b41817ef575c5f86b38d7f39"
    "82897d71a9dc67d022461f11abf1e99e306fb6eef9752ea594597f69804de8859e590440581ad7fb8e3c9a0d45b9465f"
    "0ecee2c638c28d24b5564b3dcd0b8f5984168c9fcc243c2c6bce2df6aada0e64c337fda908b78ee4d38a9bf9317ece2d"
    "4df8ef839eb1eedad032b0c3730d9a2466e1de8e020b885d062c4795455ffc77113704e6667b467dd6a1fb6d380b4017"
    "10035d6dbd78d3096576270aa16771b2e70ba3c0bb399a8e9553e6eb918a5ab6d9d7523fd2b4c75d099e144fdc4c8553"
    "e8aca50836a2448424804a3515433f78d89396fbd979bcd30adee55c8fc791d42c52e0b76f709bd89d60fe445def47d6"
    "2671ff9a6a7d0be27f6c712a5290ebadca352ec3fd59f701152ada0f0144ca47dba767131c7a0b03828193b1bc60ed55"
    "db8d66277916b178a718b68f98fb20440e6ea55e882614ae285620e866edee44779260d87b601fb469616bbbbbcca244"
    "d9fe9174463a7e598c21f1c7e8f046f3b67bf4d19bed9b2d743dcf8b016fa7c0518f044ded6ea17ec41bdf47da204ed9"
    "af82fb0770767c5ce0e3bcf8049c872f915ad4e0167ad695e97cc15fd3375c6f7bdd4b7493b31ab8c48d09fa5a0a9a09"
    "af95db2559177415137c6f086cecca2c31c6be109b5ccdba39718e889c7338c7c478f0154dfbd2775953c1393cf7ef89"
    "ea732bd22129eed956c8249a618ebae0e83deba78bde4b31d43990eadd0f23fdbe1e6bb2bdd2d48e35cba129421377cd"
    "321ba5d3ab7a34be9c66b214e4eebf00c5fd54a9070fd650ecb0df2cd7b9c705bb4af4924486e694c81101afec4b190b"
    "1649c0ae96974f9793b0b59bb73a02019a02b2dcf0baba2b717454b18bdd8b95ca3a85ba032494dc4403fb6f7b4c8038"
    "e97ab6a844ce07fbafc683155a5d6c17f9087dc4e66dfe9715e189a0bba89922beecd8eedb79257e993e67d0f1841408"
    "baeb80c5d629e63f1f8238250f07a638318ef0a74b756c294816d6dde808dbe1261b64b46c12a34c791edef60e1ffef2"
    "5c9ad6ca2d783576d484aa31d6a21a1955d0038940de8d373ced550c51a9f9c655466350193cd6dc55c1bac6530b2729"
    "5e42333dea47fc778027745e705def2f34cb6e30a677a9d4e206de94f9f95c885aa9cec7010348845d0413e502f339a2"
    "1362cf626de205d69489ef915e2510ae613dab201dcbcad7eabc0b98a0232d9908415edf053642588283c3b81b479b14"
    "8b35a33fd858d9e840863270e1a5258c2ca1f49f0829b8d4c52c34ffc7175631efcb8c1dc860cd2e769c62645f3178f2"
    "96ba67990c74c0c275bc195efb4cc67e816b4bfbe2fb54f6fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408"
    "fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408"
    "fe3408fe3408fe3408fe3408fe3408fe3408fe3408fe3408a634080000fe0100fe0100fe0100fe0100fe0100fe0100fe"
    "0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe"
    "0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe"
    "0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe"
    "0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe0100fe"
    "0100fe0100fe0100fe0100fe0100fe0100fe0100fe01000d01"
)
TEXT = "".join(f"znode-{i % 17}/data;" for i in range(300)).encode()


def noise(n: int) -> bytes:
    x, out = 1, bytearray()
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def test_reads_what_snappy_java_writes() -> None:
    assert decompress_stream(SNAPPY_JAVA) == TEXT + noise(2100) * 2 + bytes(5000)


def test_a_stream_without_the_header_is_one_raw_block() -> None:
    block = bytes([5, 4 << 2]) + b"hello"  # length 5, a literal of 5
    assert decompress_stream(block) == b"hello"


def test_every_element_kind() -> None:
    literal_61 = bytes([60 << 2, 60]) + bytes(range(61))  # length in one extra byte
    copy1 = bytes([1 | (0 << 2) | (0 << 5), 61])  # 4 bytes from offset 61
    copy2 = bytes([2 | (9 << 2), 65, 0])  # 10 bytes from offset 65
    copy4 = bytes([3 | (2 << 2), 5, 0, 0, 0])  # 3 bytes from offset 5 (overlapping, short)
    overlap = bytes([2 | (19 << 2), 1, 0])  # 20 bytes from offset 1: a run
    body = literal_61 + copy1 + copy2 + copy4 + overlap
    expected = bytearray(range(61))
    expected += expected[0:4]
    expected += expected[len(expected) - 65 : len(expected) - 55]
    for _ in range(3):
        expected.append(expected[-5])
    expected += bytes([expected[-1]]) * 20
    size = len(expected)
    varint = bytes([(size & 0x7F) | 0x80, size >> 7])
    assert decompress_block(varint + body) == bytes(expected)


@pytest.mark.parametrize(
    "raw",
    [
        bytes([4, 0x0C]) + b"abc",  # literal runs past the block
        bytes([8, 0x04, ord("a"), 1 | (0 << 2), 5]),  # copy offset before the start
        bytes([9, 0x04, ord("a"), 2 | (1 << 2), 1, 0]),  # says 9 bytes, gives 3
        bytes([0x80]),  # varint torn
        bytes([8, 0x04, ord("a"), 3 | (3 << 2), 1, 0]),  # 4-byte offset torn
    ],
)
def test_malformed_blocks_are_refused(raw: bytes) -> None:
    with pytest.raises(SnappyError):
        decompress_block(raw)


def test_torn_streams_are_refused() -> None:
    for cut in (10, 17, 21, len(SNAPPY_JAVA) - 1):
        with pytest.raises(SnappyError):
            decompress_stream(SNAPPY_JAVA[:cut])
