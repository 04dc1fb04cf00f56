"""features.identity_cache: one value per key object, by identity, bounded."""

from features.identity_cache import IdentityCache


class Key:  # unhashable by value on purpose: identity is what counts
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: int) -> None:
        self.value = value


def test_values_are_built_once_per_object_and_equal_objects_do_not_share_them():
    built: list[int] = []
    cache = IdentityCache(lambda key: built.append(key.value) or key.value * 10, max_entries=3)
    a, b = Key(1), Key(1)
    assert (cache(a), cache(a), cache(b)) == (10, 10, 10)
    assert built == [1, 1]  # a once, b (another object) once
    keys = [Key(i) for i in range(5)]
    assert [cache(key) for key in keys] == [0, 10, 20, 30, 40]  # past the bound it starts again
    assert cache(keys[-1]) == 40 and built[-1] == 4
