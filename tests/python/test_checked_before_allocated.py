# moe_ep.torch_npu sizes a call's outputs from its attributes, as torch_npu does, before the operator has checked
# them: an attribute out of range that would size gigabytes of outputs is refused naming itself and its rule, not
# with a failed (or a huge) allocation, and the group goes on.
import pytest
import torch

import moe_ep
import moe_ep.distributed as md
import moe_ep.torch_npu as tn
from thread_ranks import on_threads


@pytest.mark.parametrize("global_bs", [2**31 - 2, 2**26, 2**22])
def test_an_attribute_that_sizes_huge_outputs_is_refused_by_its_rule(global_bs):
    names = md.thread_comm_names(2)
    ids = torch.tensor([[0, 1]] * 4, dtype=torch.int32)

    def rank(r):
        tn.npu.set_device(r)
        x = torch.ones(4, 1024, dtype=torch.bfloat16)
        with pytest.raises(moe_ep.InvalidArgumentError) as refused:
            tn.npu_moe_distribute_dispatch_v2(x, ids, names[r], 2, r, 4, global_bs=global_bs)
        assert refused.value.code == moe_ep.errors.INVALID_CONFIG
        message = str(refused.value)
        assert "cannot map" not in message, message
        assert "globalBs" in message or "HCCL_BUFFSIZE" in message, message
        expand_x = tn.npu_moe_distribute_dispatch_v2(x, ids, names[r], 2, r, 4)[0]
        return expand_x.shape[0]

    assert all(rows > 0 for rows in on_threads(2, rank))
