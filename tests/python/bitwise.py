# Bit-for-bit comparison of tensors for the Python suite (NaN and -0 included), with a message naming the first difference.
import torch


def bits(t):
    """A tensor's bit patterns, so that equality is bit equality."""
    width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(width) if t.is_floating_point() else t


def assert_poison(t, what, byte=0xA5):
    """Every byte of t still holds the poison the outputs were filled with (nothing wrote it); None has none."""
    if t is None or t.numel() == 0:
        return
    raw = t.contiguous().view(torch.uint8)
    if not bool((raw == byte).all()):
        raise AssertionError(f"{what}: {int((raw != byte).sum())} bytes past what the operator defines were written")


def assert_bits(ours, golden, what, nan_equal=False):
    """Bit for bit; with nan_equal two NaNs are equal whatever their payloads (which of two NaNs an add keeps is
    the machine's choice: docs/numerics.md)."""
    assert ours.shape == golden.shape, f"{what}: shape {tuple(ours.shape)}, golden {tuple(golden.shape)}"
    same = bits(ours) == bits(golden)
    if nan_equal and ours.is_floating_point():
        same |= torch.isnan(ours) & torch.isnan(golden)
    if not bool(same.all()):
        where = (~same).nonzero()[0].tolist()
        raise AssertionError(f"{what}: {int((~same).sum())} elements differ, first at {where}: "
                             f"ours {ours[tuple(where)]!r}, golden {golden[tuple(where)]!r}")


def assert_prefix(ours, golden, what):
    """The first len(golden) entries of ours are golden's, bit for bit, and the rest still holds the poison: an
    output the operator defines only in part (rows received, this rank's triples)."""
    n = len(golden)
    assert_bits(ours[:n], golden, what)
    assert_poison(ours[n:], f"{what} past its {n} defined entries")
