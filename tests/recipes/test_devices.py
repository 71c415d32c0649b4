"""The recipes refuse a device this machine cannot compute on before doing any work."""

import pytest
import torch

from emu3.recipes.common import check_device


def test_a_bad_or_missing_device_is_a_clear_error():
    check_device("cpu")
    with pytest.raises(ValueError, match="'gpu0': not a torch device"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            check_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_demo_and_train_vq_stop_before_their_first_stage(tmp_path):
    from emu3.recipes import train_demo, train_vq

    with pytest.raises(ValueError, match="no CUDA GPU"):
        train_demo.main(train_demo.DemoConfig(out=str(tmp_path / "demo"), device="cuda"))
    assert not (tmp_path / "demo" / "vq").exists()  # no stage started
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train_vq.main(train_vq.VQTrainConfig(out=str(tmp_path / "vq"), device="cuda:0"))
    assert not (tmp_path / "vq").exists()
