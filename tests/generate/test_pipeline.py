"""Every pipeline end to end on a tiny random model, in memory, from a saved folder, and via the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

from emu3.cli import main
from emu3.generate.pipeline import Pipeline, Turn
from emu3.vision.video_io import read_video, write_video
from tests.helpers.tiny_pipeline import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory):
    return pipe.save(tmp_path_factory.mktemp("model"))


def test_text_to_image_batches_prompts_and_samples(pipe):
    images = pipe.text_to_image(["a red circle", "a much longer prompt about two blue squares"], num_images=2, seed=1)
    assert len(images) == 4 and all(i.shape == (32, 32, 3) and i.dtype == np.uint8 for i in images)
    again = pipe.text_to_image(["a red circle", "a much longer prompt about two blue squares"], num_images=2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    unguided = pipe.text_to_image("a red circle", guidance=1.0, seed=1, image_size=(16, 24))
    assert unguided[0].shape == (16, 24, 3)


def test_text_to_image_codes_are_the_codes_behind_the_images(pipe):
    codes = pipe.text_to_image_codes(["a red circle", "two blue squares"], num_images=2, seed=1)
    h, w = pipe.latent_size()
    assert codes.shape == (4, h, w) and 0 <= int(codes.min()) and int(codes.max()) < pipe.vq.cfg.codebook_size
    images = pipe.text_to_image(["a red circle", "two blue squares"], num_images=2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(pipe.decode_images(codes), images, strict=True))


def test_decoding_in_cpu_sized_batches_gives_the_one_call_pixels(pipe):
    from emu3.generate.pipeline import CPU_VQ_BATCH
    from emu3.vision.image_io import to_uint8

    n = 2 * CPU_VQ_BATCH + 3  # two full chunks and a short one
    codes = torch.randint(0, pipe.vq.cfg.codebook_size, (n, 4, 4), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = [to_uint8(p) for p in pipe.vq.decode_image(codes).float()]
        chunked = pipe.decode_images(codes)
    assert len(chunked) == n and all(np.array_equal(a, b) for a, b in zip(whole, chunked, strict=True))


def test_progress_reaches_the_total(pipe):
    seen = []
    pipe.text_to_image("x", seed=0, progress=lambda done, total: seen.append((done, total)))
    h, w = pipe.latent_size()
    assert seen[-1][0] == seen[-1][1] == h * (w + 1) + 3


def test_chat_and_caption_decode_text(pipe):
    image = pipe.text_to_image("a red circle", seed=2)[0]
    answer = pipe.chat([Turn("user", (image, "what colour is it?"))], max_new_tokens=6)
    assert isinstance(answer, str)
    history = [Turn("user", (image, "what colour?")), Turn("assistant", (answer,)), Turn("user", ("and shape?",))]
    assert isinstance(pipe.chat(history, max_new_tokens=4), str)
    assert isinstance(pipe.caption(image, max_new_tokens=5), str)


def test_video_generation_and_extension(pipe):
    clip = pipe.text_to_video("a ball moving right", frames=2, seed=0)
    assert clip.shape == (8, 32, 32, 3)
    longer = pipe.extend_video(clip, "a ball moving right", new_frames=1, seed=0)
    assert longer.shape == (12, 32, 32, 3)
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        pipe.extend_video(clip[:6], "x", new_frames=1)


def test_saved_folder_reloads_and_opens_in_transformers(pipe, folder):
    again = Pipeline.load(folder, dtype=torch.float32)
    a = pipe.text_to_image("a red circle", seed=3)[0]
    assert np.array_equal(a, again.text_to_image("a red circle", seed=3)[0])
    transformers = pytest.importorskip("transformers")
    assert transformers.Emu3ForConditionalGeneration.from_pretrained(folder) is not None


def test_mismatched_parts_are_refused(pipe):
    from emu3.model.config import tiny
    from emu3.model.init import build_decoder

    small = build_decoder(tiny(vocab_size=100))
    with pytest.raises(ValueError, match="do not belong to the same model"):
        Pipeline(small, pipe.vq, pipe.tok, pipe.cfg)


def test_cli_generate_chat_and_video(folder, tmp_path, capsys):
    out = tmp_path / "img.png"
    assert main(["generate", "a red circle", "a square", "-o", str(out), "--model", str(folder), "--seed", "0",
                 "--dtype", "fp32"]) == 0  # fmt: skip
    written = [tmp_path / "img_0.png", tmp_path / "img_1.png"]
    assert all(np.asarray(Image.open(p)).shape == (32, 32, 3) for p in written)
    assert main(["chat", str(written[0]), "what is it?", "--model", str(folder), "--max-new-tokens", "4"]) == 0
    gif = tmp_path / "clip.gif"
    assert (
        main(["generate-video", "a ball", "-o", str(gif), "--model", str(folder), "--frames", "1", "--seed", "0"]) == 0
    )
    assert read_video(gif).shape == (4, 32, 32, 3)
    given = tmp_path / "given.gif"
    write_video(given, read_video(gif))
    longer = tmp_path / "longer.gif"
    assert main(["generate-video", "a ball", "-o", str(longer), "--extend", str(given), "--model", str(folder),
                 "--frames", "1"]) == 0  # fmt: skip
    assert read_video(longer).shape == (8, 32, 32, 3)
    capsys.readouterr()


def test_cli_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="model folder not found"):
        main(["generate", "x", "--model", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="--size"):
        from emu3.commands import parse_size

        parse_size("big")
