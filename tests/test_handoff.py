"""Batch results handed to render processes through shared memory (`tasks.batch.handoff`):
what a process unpacks is the image it would have been sent pickled, and a folder run with
`render_pool="process"` writes the bytes of a thread-pool run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nc_viz.pair import PairSpec, load_model_pair, map_leaves
from nc_viz.tasks.batch.handoff import pack, packed_size, slot_plan, unpack


@pytest.fixture(scope="module")
def neuron_result(small_pair):
    base, nc = small_pair
    pair = load_model_pair(PairSpec(str(base), str(nc), device="cpu"))
    size = pair.preprocess.input_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    return pair.run(x, None, "cam", "panel", 4, "contribution", "fp32")


def _leaves(result) -> list:
    found: list = []
    map_leaves(result, found.append)
    return found


def test_an_unpacked_image_equals_its_slice(neuron_result):
    slot = torch.empty(packed_size(neuron_result, 3), dtype=torch.uint8)
    skeleton = pack(neuron_result, slot)
    assert skeleton is not None
    for i in range(3):
        expected, got = neuron_result.images(i), unpack(skeleton, slot, i)
        assert got.inputs.shape == (1, 0, *expected.inputs.shape[2:])  # what no figure draws is not sent
        pairs = list(zip(_leaves(expected), _leaves(got)))
        assert len(pairs) == len(_leaves(neuron_result)) > 10
        for want, have in pairs[1:]:
            assert type(have) is type(want) and have.dtype == want.dtype
            np.testing.assert_array_equal(np.asarray(have), np.asarray(want))


def test_a_batch_that_does_not_fit_its_slot_is_not_packed(neuron_result):
    slot = torch.empty(packed_size(neuron_result, 3) // 2, dtype=torch.uint8)
    assert pack(neuron_result, slot) is None


def test_a_smaller_batch_fits_a_slot_sized_for_a_larger_one(neuron_result):
    slot = torch.empty(packed_size(neuron_result.images(slice(0, 1)), 3), dtype=torch.uint8)
    assert pack(neuron_result, slot) is not None


def test_the_ring_has_room_for_every_figure_in_flight():
    """`max_pending` figures span at most ceil(max_pending / batch) + 1 batches, and one more is packed."""
    assert slot_plan(32, 36) == 4
    assert slot_plan(1, 5) == 7
    assert slot_plan(128, 128 + 16) == 4


def _both_pools(small_pair, tmp_path, capsys, images: int, flags: list[str]) -> dict:
    """The same neurons run in threads and in processes: {pool: output folder}."""
    from conftest import pair_args, run
    from test_batch import write_images

    src = tmp_path / "in"
    write_images(src, images)
    outs = {pool: tmp_path / pool for pool in ("thread", "process")}
    for pool, out in outs.items():
        args = ["batch", src, "-o", out, *pair_args(small_pair), "--layout", "neurons", "--workers", "0",
                "--render-pool", pool, *flags]
        assert run(args, capsys)[0] == 0
    return outs


def test_a_neurons_run_in_processes_writes_the_bytes_of_threads(small_pair, tmp_path, capsys):
    from test_batch import files_of

    outs = _both_pools(small_pair, tmp_path, capsys, images=5, flags=["--top", "3", "--batch-size", "2",
                                                                      "--render-threads", "2"])
    assert files_of(outs["process"]) == files_of(outs["thread"])
    assert len(files_of(outs["thread"])) == 7


def test_no_room_for_the_slots_is_one_line_naming_the_flags(neuron_result, monkeypatch):
    from nc_viz.core.errors import ParameterFailure
    from nc_viz.tasks.batch.handoff import SharedRenderPool

    def full(self):
        raise RuntimeError("unable to write to file </torch_1_2>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", full)
    pool = SharedRenderPool(2, 32, 36)
    with pytest.raises(ParameterFailure) as info:
        pool.submit_batch(neuron_result, print, [()] * 3, lambda: None)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message
    assert info.value.param == "render_pool" and "render_pool thread or a smaller batch_size" in message
    pool.shutdown()


def test_auto_draws_in_processes_from_64_figures_on_8_cores():
    from nc_viz.tasks.batch import BatchOptions

    assert BatchOptions().render_pool == "thread"  # the library's default; the CLI's is auto
    auto = BatchOptions(render_pool="auto")
    assert [auto.render_pool_for(n, 16) for n in (1, 63, 64, 5000)] == ["thread", "thread", "process", "process"]
    assert [auto.render_pool_for(5000, c) for c in (2, 7, 8)] == ["thread", "thread", "process"]
    assert BatchOptions(render_pool="thread").render_pool_for(5000, 16) == "thread"
    assert BatchOptions(render_pool="process").render_pool_for(1, 1) == "process"


def test_auto_falls_back_to_threads_without_shared_memory(small_pair, tmp_path, monkeypatch, caplog):
    """`auto` that would draw in processes but gets no shared memory draws in threads, with a
    warning; the figures are those of a thread run."""
    import logging

    import nc_viz.tasks.batch.options as options
    from test_batch import files_of, write_images
    from nc_viz.tasks.batch import BatchOptions, run_batch

    src = tmp_path / "in"
    write_images(src, 4)
    base, nc = small_pair
    spec = PairSpec(str(base), str(nc), device="cpu")
    run_batch(src, tmp_path / "thread", pair_spec=spec, options=BatchOptions(render_pool="thread", workers=0))

    def full(self):
        raise RuntimeError("unable to write to file </torch_1_2>: No space left on device (28)")

    monkeypatch.setattr(options, "AUTO_PROCESS_FIGURES", 2)
    monkeypatch.setattr(options, "AUTO_PROCESS_CORES", 1)
    monkeypatch.setattr(torch.Tensor, "share_memory_", full)
    with caplog.at_level(logging.WARNING):
        run_batch(src, tmp_path / "auto", pair_spec=spec, options=BatchOptions(render_pool="auto", workers=0))
    assert any("drawing in threads: no room for" in r.getMessage() for r in caplog.records)
    assert files_of(tmp_path / "auto") == files_of(tmp_path / "thread")


def test_a_batch_numpy_cannot_hold_goes_pickled(neuron_result):
    """A bfloat16 array, or one that requires grad, in a result: not packed (the batch is sent
    pickled instead), never an error."""
    import dataclasses

    slot = torch.empty(packed_size(neuron_result, 3), dtype=torch.uint8)
    bf16 = dataclasses.replace(neuron_result, inputs=neuron_result.inputs.bfloat16())
    assert pack(bf16, slot) is not None  # the input is not sent
    role = neuron_result.roles["nc"]
    odd = dataclasses.replace(role, heat=role.heat.bfloat16())
    assert pack(dataclasses.replace(neuron_result, roles={**neuron_result.roles, "nc": odd}), slot) is None
    grad = dataclasses.replace(role, heat=role.heat.clone().requires_grad_())
    skeleton = pack(dataclasses.replace(neuron_result, roles={**neuron_result.roles, "nc": grad}), slot)
    np.testing.assert_array_equal(unpack(skeleton, slot, 1).roles["nc"].heat.numpy(), role.heat[1:2].numpy())


def test_slots_are_reused_when_the_figures_drawn_from_them_are_done(small_pair, tmp_path, capsys):
    """Eight passes of one image, one render process: 3 figures in flight, a ring of 5 slots,
    so slots are reused; the figures are those of threads."""
    from test_batch import files_of

    outs = _both_pools(small_pair, tmp_path, capsys, images=8, flags=["--top", "2", "--batch-size", "1",
                                                                      "--render-threads", "1"])
    assert slot_plan(1, 1 + 2 * 1) == 5
    assert files_of(outs["process"]) == files_of(outs["thread"])
