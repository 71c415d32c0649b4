"""Every pipeline end to end on a tiny random model, in memory, from a saved folder, and via the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

from emu3.cli import main
from emu3.generate.pipeline import Pipeline, Turn
from emu3.tokens import format as fmt
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


def test_parse_vision_reads_back_the_generated_grid_and_refuses_anything_else(pipe):
    h, w = pipe.latent_size()
    codes = pipe.text_to_image_codes("a red circle", seed=3)[0]
    prefix = fmt.image_prefix(h, w, pipe.tok)
    generated = fmt.image_block(codes, pipe.tok)[len(prefix) :] + [pipe.tok.special.eos]
    eol, eof, eoi, eos = pipe.grid_ids()
    assert generated[w] == eol and generated[-3:] == [eof, eoi, eos]  # the ids a grid plan closes with
    assert torch.equal(pipe.parse_vision(prefix, generated, fmt.Image), codes)
    with pytest.raises(fmt.FormatError, match="expected one Video"):
        pipe.parse_vision(prefix, generated, fmt.Video)
    twice = generated[:-1] + fmt.image_block(codes, pipe.tok)
    with pytest.raises(fmt.FormatError, match="found 2"):
        pipe.parse_vision(prefix, twice, fmt.Image)


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


def test_a_tokenizer_that_tiles_only_images_takes_videos_in_whole_latent_cells():
    """tile_videos=false: a 20x12 clip is extended at its own size, not resized to the 8 px image tiles."""
    from emu3.vision.config import tiny as tiny_vq_config
    from emu3.vision.vq import build_vq
    from tests.helpers.tiny_tokenizers import CODEBOOK_SIZE

    vq = build_vq(tiny_vq_config(codebook_size=CODEBOOK_SIZE, tile_size=8, tile_videos=False)).eval()
    pipe = tiny_pipeline(seed=0, vq=vq)
    clip = np.random.default_rng(0).integers(0, 256, (4, 12, 20, 3), dtype=np.uint8)
    assert pipe.vq_sized(clip).shape == clip.shape and tuple(pipe.encode_video(clip).shape) == (1, 3, 5)
    longer = pipe.extend_video(clip, "a ball moving right", new_frames=1, seed=0)
    assert longer.shape == (8, 12, 20, 3) and np.array_equal(longer[:4], clip)


def test_a_video_longer_than_the_context_is_made_in_windows_that_reread_the_latest_frames(pipe, monkeypatch):
    from emu3.tokens import format as fmt

    t = pipe.vq.cfg.temporal_downsample_factor
    clip = pipe.text_to_video("a ball moving right", frames=2, seed=0)
    h, w = pipe.latent_size()
    most = pipe.video_window(len(pipe.tok.encode("a ball moving right")) + 1, h, w)
    assert 2 < most < 2 + 6  # so that 6 more latent frames need several windows
    calls = []
    generate = pipe._generate

    def spy(rows, plans, negative, *args):
        calls.append((rows[0], plans[0]))
        return generate(rows, plans, negative, *args)

    monkeypatch.setattr(pipe, "_generate", spy)
    longer = pipe.extend_video(clip, "a ball moving right", new_frames=6, seed=0)
    assert longer.shape == (len(clip) + 6 * t, *clip.shape[1:]) and np.array_equal(longer[: len(clip)], clip)
    assert len(calls) > 1
    made = 0
    for row, plan in calls:
        assert len(row) + plan.numel() <= pipe.decoder.cfg.max_seq_len
        # Each window reads the latest frames, as many as fit beside its new ones, re-encoded from pixels.
        have = len(clip) // t + made
        ctx = min(have, most - 1)
        step = round((plan.numel() - 2) / (h * (w + 1) + 1))
        assert ctx + step <= most
        latest = pipe.encode_video(longer[(have - ctx) * t : have * t])
        block = fmt.video_block(latest, pipe.tok)[:-1]
        body = block[len(fmt.video_prefix(ctx, h, w, pipe.tok)) :]
        assert row[-len(body) :] == body and fmt.video_prefix(ctx + step, h, w, pipe.tok) == row[-len(body) - len(
            fmt.video_prefix(ctx + step, h, w, pipe.tok)) : -len(body)]  # fmt: skip
        made += step
    assert made == 6
    calls.clear()
    pipe.extend_video(clip, "a ball moving right", new_frames=3, seed=0, context_frames=1)
    (row, _), header = calls[0], fmt.video_prefix(1 + 3, h, w, pipe.tok)  # one frame read, three made
    assert len(calls) == 1 and row[-(h * (w + 1) + 1) - len(header) : -(h * (w + 1) + 1)] == header
    with pytest.raises(ValueError, match="context_frames must be in 1.."):
        pipe.extend_video(clip, "x", new_frames=1, context_frames=most)


def test_video_windows_cover_every_new_frame_and_never_overflow():
    from emu3.generate.pipeline import video_windows

    for given in range(0, 6):
        for new in range(1, 12):
            for most in range(1, 7):
                for context in (None, *range(1, most)):
                    windows = video_windows(given, new, most, context)
                    assert sum(step for _, step in windows) == new
                    made = 0
                    for ctx, step in windows:
                        assert step >= 1 and ctx + step <= most and ctx <= given + made
                        assert ctx == min(given + made, most - 1 if context is None else context)
                        made += step
    assert video_windows(0, 4, 3) == [(0, 3), (2, 1)]  # from nothing: fill the context, then slide
    assert video_windows(2, 1, 6) == [(2, 1)]  # it all fits: one window holding the whole clip
    with pytest.raises(ValueError, match="context_frames"):
        video_windows(2, 1, 3, context_frames=3)


def test_a_video_from_nothing_longer_than_the_context_is_made_in_windows(pipe):
    t = pipe.vq.cfg.temporal_downsample_factor
    most = pipe.video_window(len(pipe.tok.encode("a ball")) + 1, *pipe.latent_size())
    clip = pipe.text_to_video("a ball", frames=most + 2, seed=1)
    assert clip.shape[0] == (most + 2) * t
    # The first window is text_to_video of as many frames as fit, with the same seed.
    np.testing.assert_array_equal(clip[: most * t], pipe.text_to_video("a ball", frames=most, seed=1))


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


def test_cli_errors_are_clear(tmp_path, folder, capsys):
    # Bad input is one line on stderr and exit status 2, not a traceback; --debug shows the traceback.
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    assert main(["chat", str(corrupt), "what is it?", "--model", str(folder)]) == 2
    assert "emu3 chat: error: " in capsys.readouterr().err
    assert main(["generate", "x", "--size", "13", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "emu3 generate: error: image size 13x13" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="13x13"):
        main(["--debug", "generate", "x", "--size", "13", "--model", str(folder)])
    with pytest.raises(SystemExit, match="model folder not found"):
        main(["generate", "x", "--model", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="--size"):
        from emu3.commands import parse_size

        parse_size("big")
