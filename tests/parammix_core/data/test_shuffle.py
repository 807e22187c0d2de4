"""The external shuffle: a seeded permutation that the bucket count does not change."""

from parammix_core.data.shuffle import BUCKET_BYTES, bucket_count, read_shuffled, write_buckets


def test_order_is_a_seeded_permutation_whatever_the_bucket_count(tmp_path):
    docs = [f"document {i} \u00e9\U0001f600" for i in range(2000)]
    orders = [
        list(read_shuffled(write_buckets(iter(docs), 5, tmp_path / str(b), b))) for b in (1, 3, 64)
    ]
    assert orders[0] == orders[1] == orders[2]
    assert sorted(orders[0]) == sorted(docs) and orders[0] != docs
    other = list(read_shuffled(write_buckets(iter(docs), 6, tmp_path / "seed6", 3)))
    assert other != orders[0]


def test_lone_surrogates_survive_the_round_trip(tmp_path):
    docs = ["a\ud800b", "plain"]
    assert sorted(read_shuffled(write_buckets(iter(docs), 0, tmp_path, 2))) == sorted(docs)


def test_bucket_count_follows_the_size():
    assert bucket_count(0) == 1
    assert bucket_count(BUCKET_BYTES * 10 + 1) == 11
    assert bucket_count(BUCKET_BYTES * 10**6) == 512
