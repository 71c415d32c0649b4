"""The colour-binding task: which colour goes with which shape, told apart from guessing between two."""

import random
from types import SimpleNamespace

import numpy as np

from emu3.eval import world
from emu3.worlds import checker, shapes


def test_binding_questions_ask_about_either_of_two_objects_that_differ_in_shape_and_colour():
    rng = random.Random(0)
    cases = [shapes.binding_question(rng) for _ in range(1000)]
    first = []
    for scene, question, colour, other in cases:
        a, b = scene.objects
        assert a.shape != b.shape and a.colour != b.colour
        asked = next(o for o in scene.objects if question == f"what colour is the {o.shape}?")
        assert asked.colour == colour and other in {a.colour, b.colour} - {colour}
        first.append(asked == min(scene.objects, key=lambda o: o.cell))
    assert 0.45 < np.mean(first) < 0.55  # as often the first object in reading order as the second
    assert not any(shapes.is_held_out(o) for scene, *_ in cases for o in scene.objects)


class _Reader:
    """Answers from the world's checker: the colour of the object of the asked shape (`bind=True`), or
    of the first object in reading order whatever was asked (a reader that sees colours but not whose)."""

    latent_size = staticmethod(lambda: (9, 9))
    vq = SimpleNamespace(cfg=SimpleNamespace(spatial_factor=8))  # 72 px images

    def __init__(self, bind: bool):
        self.bind = bind

    def ask_batch(self, images, questions):
        answers = []
        for image, question in zip(images, questions, strict=True):
            found = checker.detect(image).objects
            shape = question.removeprefix("what colour is the ").removesuffix("?")
            pick = [o for o in found if o.shape == shape] if self.bind else sorted(found, key=lambda o: o.cell)
            answers.append(pick[0].colour + ".")
        return answers


def test_a_reader_that_binds_scores_one_and_one_that_guesses_scores_half():
    bound = world.colour_binding(_Reader(bind=True), n=80, seed=1)
    assert (bound["accuracy"], bound["other"]) == (1.0, 0.0)
    guessed = world.colour_binding(_Reader(bind=False), n=80, seed=1)
    assert guessed["accuracy"] + guessed["other"] == 1.0  # always one of the two colours, never a third
    assert 0.3 < guessed["accuracy"] < 0.7
    assert len(guessed["items"]) == 80 and len(guessed["examples"]) == 8
    again = world.colour_binding(_Reader(bind=False), n=80, seed=1)
    assert again["items"] == guessed["items"]  # seeded
    assert world.colour_binding(_Reader(bind=False), n=80, seed=2)["items"] != guessed["items"]
