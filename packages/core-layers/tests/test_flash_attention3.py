import seedbed.core_layers.flash_attention3 as fa3
from seedbed.core_layers import attention
from seedbed.core_layers.attention import functional


def test_seed_module_means_exactly_the_attention_wrapper():
    assert fa3.attention is attention is functional.attention
    assert fa3._HAS_FLASH3 is functional._HAS_FLASH3
    assert fa3._HAS_FLASH2 is functional._HAS_FLASH2
    assert fa3.last_backend is functional.last_backend
