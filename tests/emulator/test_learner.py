"""Tests of the emulator's real CPU learner (emulator/learner.py) and the shipped demo data.

Measured on the demo task with the default HyperParams (epochs 3, lr 0.05, batch 8, rank 4, seed 0):
accuracy on eval_prompts.jsonl 0.850 for train.jsonl vs 0.167 for train_shuffled.jsonl (seeds 0-3:
0.85-0.88 vs 0.16-0.23); first step loss ln(6)=1.79, mean loss epoch 1 = 1.19 -> epoch 3 = 0.045.
Rank 1: 0.517, rank 8: 0.875.  1 epoch: 0.783.  Last-epoch mean loss, seeds 0-3: default 0.02-0.045,
lr x0.1 0.99-1.08, batch 32 0.07-0.15, rank 1 0.85-1.04, rank 8 0.025-0.065.
Train time: ~0.06 s CPU for 500 examples x 3 epochs, ~2.5 s for 20 000 x 3.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emulator import learner as L
from harness.paths import DEMO

pytestmark = pytest.mark.fast

LABELS = ("billing", "shipping", "technical", "account", "refund", "other")


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------


def _read_jsonl(name: str) -> list[dict]:
    with open(DEMO / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def train_examples() -> list[L.Example]:
    return [L.example_from_vertex(row) for row in _read_jsonl("train.jsonl")]


@pytest.fixture(scope="module")
def shuffled_examples() -> list[L.Example]:
    return [L.example_from_vertex(row) for row in _read_jsonl("train_shuffled.jsonl")]


@pytest.fixture(scope="module")
def eval_rows() -> list[dict]:
    return _read_jsonl("eval_prompts.jsonl")


@pytest.fixture(scope="module")
def eval_prompts(eval_rows) -> list[str]:
    system = (DEMO / "system_instruction.txt").read_text(encoding="utf-8").strip()
    return [L.flatten_prompt(system, [row["prompt"]]) for row in eval_rows]


@pytest.fixture(scope="module")
def default_run(train_examples):
    return L.train(train_examples, L.HyperParams())


def _accuracy(model: L.TunedModel, prompts: list[str], rows: list[dict], tag: str | None = None) -> float:
    preds = model.predict_many(prompts)
    pairs = [(p.text, r["reference"]) for p, r in zip(preds, rows) if tag is None or tag in r["tags"]]
    return sum(a == b for a, b in pairs) / len(pairs)


def _epoch_mean(records: list[L.StepRecord], epoch: int) -> float:
    losses = [r.loss for r in records if r.epoch == epoch]
    return sum(losses) / len(losses)


# ----------------------------------------------------------------------------------------------
# demo data
# ----------------------------------------------------------------------------------------------


def test_demo_files_shape_and_size(train_examples, shuffled_examples, eval_rows):
    names = {p.name for p in DEMO.iterdir()}
    assert {"train.jsonl", "train_shuffled.jsonl", "eval_prompts.jsonl", "seeds_numbers.jsonl",
            "system_instruction.txt", "README.md"} <= names
    assert sum(p.stat().st_size for p in DEMO.iterdir()) < 600_000
    assert 300 <= len(train_examples) <= 400
    assert 100 <= len(eval_rows) <= 140
    # same tickets, labels permuted (same label distribution, many labels changed)
    assert [e.prompt for e in train_examples] == [e.prompt for e in shuffled_examples]
    assert sorted(e.output for e in train_examples) == sorted(e.output for e in shuffled_examples)
    changed = sum(a.output != b.output for a, b in zip(train_examples, shuffled_examples))
    assert changed > 0.6 * len(train_examples)
    assert {e.output for e in train_examples} == set(LABELS)
    # held-out tickets are never identical to a training ticket
    system = (DEMO / "system_instruction.txt").read_text(encoding="utf-8").strip()
    train_tickets = {e.prompt[len(system) + 1:] for e in train_examples}
    assert all(e.prompt.startswith(system + "\n") for e in train_examples)
    assert not train_tickets & {r["prompt"] for r in eval_rows}
    assert len({r["prompt"] for r in eval_rows}) == len(eval_rows)
    for r in eval_rows:
        assert r["reference"] in LABELS and r["tags"][0] == r["reference"]
        assert r["tags"][1] in {"easy", "hard", "ambiguous"}
    assert {r["tags"][1] for r in eval_rows} == {"easy", "hard", "ambiguous"}


def test_seed_numbers_file():
    rows = _read_jsonl("seeds_numbers.jsonl")
    assert len(rows) >= 20
    examples = [L.example_from_gemini_api(r) for r in rows]
    pairs = {(e.prompt, e.output) for e in examples}
    for pair in [("1", "2"), ("-3", "-2"), ("ninety nine", "one hundred"), ("10,100,000", "10,100,001"),
                 ("seven", "eight")]:
        assert pair in pairs


def test_demo_generator_is_deterministic(tmp_path):
    from scripts import make_demo_data

    make_demo_data.write(tmp_path)
    for name in ("train.jsonl", "train_shuffled.jsonl", "eval_prompts.jsonl", "seeds_numbers.jsonl",
                 "system_instruction.txt", "README.md"):
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name


# ----------------------------------------------------------------------------------------------
# learning on the demo task
# ----------------------------------------------------------------------------------------------


def test_good_data_beats_shuffled_data(default_run, shuffled_examples, eval_prompts, eval_rows):
    good, _ = default_run
    bad, _ = L.train(shuffled_examples, L.HyperParams())
    good_acc = _accuracy(good, eval_prompts, eval_rows)
    bad_acc = _accuracy(bad, eval_prompts, eval_rows)
    assert good_acc >= 0.78, good_acc  # measured 0.850
    assert bad_acc <= 0.35, bad_acc  # measured 0.167 (chance is ~1/6)
    assert good_acc - bad_acc >= 0.45
    assert _accuracy(good, eval_prompts, eval_rows, "easy") >= 0.85  # measured 0.96
    # not a perfect oracle: ambiguous tickets stay hard (measured 0.48)
    assert _accuracy(good, eval_prompts, eval_rows, "ambiguous") < 0.9


def test_loss_falls(default_run):
    _, records = default_run
    assert records[0].loss == pytest.approx(math.log(6), rel=1e-5)  # B starts at zero -> uniform
    first, last = _epoch_mean(records, 1), _epoch_mean(records, 3)
    assert last < 0.3 * first, (first, last)  # measured 1.19 -> 0.045
    assert all(math.isfinite(r.loss) and r.loss >= 0 for r in records)
    assert [r.step for r in records] == list(range(1, len(records) + 1))
    assert [r.epoch for r in records] == sorted(r.epoch for r in records)


def test_more_epochs_change_the_curve_and_the_model(train_examples, default_run, eval_prompts, eval_rows):
    model3, rec3 = default_run
    model1, rec1 = L.train(train_examples, L.HyperParams(epochs=1))
    _, rec5 = L.train(train_examples, L.HyperParams(epochs=5))
    assert len(rec1) * 3 == len(rec3) and len(rec1) * 5 == len(rec5)
    # same seed: the first epoch is the same run, then training continues
    assert [r.loss for r in rec1] == [r.loss for r in rec3[: len(rec1)]]
    assert _epoch_mean(rec5, 5) < _epoch_mean(rec3, 3) < _epoch_mean(rec1, 1)
    lp1 = [p.logprob for p in model1.predict_many(eval_prompts)]
    lp3 = [p.logprob for p in model3.predict_many(eval_prompts)]
    assert not np.allclose(lp1, lp3)
    assert _accuracy(model1, eval_prompts, eval_rows) != _accuracy(model3, eval_prompts, eval_rows)


def test_learning_rate_changes_what_is_learned(train_examples, default_run, eval_prompts):
    model, rec = default_run
    slow_model, slow = L.train(train_examples, L.HyperParams(learning_rate=L.vertex_learning_rate(0.1)))
    fast_model, fast = L.train(train_examples, L.HyperParams(learning_rate=L.vertex_learning_rate(2.0)))
    assert len(slow) == len(rec) == len(fast)
    assert slow[0].loss == rec[0].loss  # same start, different trajectories
    assert slow[1].loss != rec[1].loss != fast[1].loss
    assert _epoch_mean(slow, 3) > 5 * _epoch_mean(rec, 3)  # a 10x smaller step learns much less
    lp = [p.logprob for p in model.predict_many(eval_prompts)]
    assert not np.allclose(lp, [p.logprob for p in slow_model.predict_many(eval_prompts)])
    assert not np.allclose(lp, [p.logprob for p in fast_model.predict_many(eval_prompts)])


def test_batch_size_changes_what_is_learned(train_examples, default_run, eval_prompts):
    model, rec = default_run
    model4, rec4 = L.train(train_examples, L.HyperParams(batch_size=4))
    model32, rec32 = L.train(train_examples, L.HyperParams(batch_size=32))
    n = len(train_examples)
    assert len(rec4) == 3 * math.ceil(n / 4) and len(rec32) == 3 * math.ceil(n / 32) and len(rec) == 3 * 45
    assert _epoch_mean(rec32, 3) > _epoch_mean(rec, 3)  # fewer steps -> less progress
    lp = [p.logprob for p in model.predict_many(eval_prompts)]
    assert not np.allclose(lp, [p.logprob for p in model4.predict_many(eval_prompts)])
    assert not np.allclose(lp, [p.logprob for p in model32.predict_many(eval_prompts)])


def test_adapter_rank_changes_what_is_learned(train_examples, eval_prompts, eval_rows):
    m1, r1 = L.train(train_examples, L.HyperParams(adapter_rank=L.ADAPTER_RANKS["ADAPTER_SIZE_ONE"]))
    m8, r8 = L.train(train_examples, L.HyperParams(adapter_rank=L.ADAPTER_RANKS["ADAPTER_SIZE_EIGHT"]))
    assert m1.rank == 1 and m8.rank == 8
    assert [r.loss for r in r1] != [r.loss for r in r8]
    assert _epoch_mean(r1, 3) > 3 * _epoch_mean(r8, 3)  # measured 0.98 vs 0.06
    acc1, acc8 = _accuracy(m1, eval_prompts, eval_rows), _accuracy(m8, eval_prompts, eval_rows)
    assert acc1 < acc8 - 0.15, (acc1, acc8)  # measured 0.517 vs 0.875: rank 1 cannot separate 6 queues


def test_adapter_ranks_mapping():
    assert L.ADAPTER_RANKS == {"ADAPTER_SIZE_ONE": 1, "ADAPTER_SIZE_TWO": 2, "ADAPTER_SIZE_FOUR": 4,
                               "ADAPTER_SIZE_EIGHT": 8, "ADAPTER_SIZE_SIXTEEN": 16,
                               "ADAPTER_SIZE_THIRTY_TWO": 32}


# ----------------------------------------------------------------------------------------------
# mechanics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,epochs,batch", [(360, 3, 8), (10, 1, 3), (7, 4, 16), (1, 2, 1), (16, 5, 4)])
def test_planned_steps_matches_records(n, epochs, batch):
    examples = [L.Example(f"prompt number {i} about {'cats' if i % 2 else 'dogs'}", "cat" if i % 2 else "dog")
                for i in range(n)]
    hp = L.HyperParams(epochs=epochs, batch_size=batch)
    seen: list[L.StepRecord] = []
    _, records = L.train(examples, hp, on_step=seen.append)
    assert L.planned_steps(n, hp) == len(records) == len(seen)
    assert seen == records
    assert records[-1].epoch == epochs
    assert L.planned_steps(0, hp) == 0


def test_on_step_exception_aborts_training(train_examples):
    calls = []

    def cancel(record: L.StepRecord) -> None:
        calls.append(record.step)
        if record.step == 3:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        L.train(train_examples, L.HyperParams(), on_step=cancel)
    assert calls == [1, 2, 3]


def test_deterministic_for_a_fixed_seed(train_examples, default_run, eval_prompts):
    model_a, rec_a = default_run
    model_b, rec_b = L.train(train_examples, L.HyperParams())
    assert rec_a == rec_b
    assert model_a.predict_many(eval_prompts) == model_b.predict_many(eval_prompts)
    model_c, rec_c = L.train(train_examples, L.HyperParams(seed=1))
    assert [r.loss for r in rec_c] != [r.loss for r in rec_a]
    assert model_c.predict_many(eval_prompts) != model_a.predict_many(eval_prompts)


def test_concurrent_training_in_threads_is_deterministic(train_examples, default_run):
    from concurrent.futures import ThreadPoolExecutor

    _, expected = default_run
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: L.train(train_examples, L.HyperParams())[1], range(2)))
    assert runs == [expected, expected]


def test_save_load_round_trip(default_run, eval_prompts, tmp_path):
    model, _ = default_run
    path = tmp_path / "adapter.bin"  # any name: written exactly there
    model.save(path)
    assert path.exists() and not (tmp_path / "adapter.bin.npz").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.bin"]
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickled objects
        assert {"meta", "A", "B", "b", "idf", "buckets"} <= set(data.files)
    loaded = L.TunedModel.load(path)
    assert loaded.outputs == model.outputs and loaded.hyperparams == model.hyperparams
    assert loaded.predict_many(eval_prompts) == model.predict_many(eval_prompts)
    for prompt in eval_prompts[:10]:
        assert loaded.predict(prompt) == model.predict(prompt)
        assert loaded.predict(prompt, temperature=1.0, seed=7) == model.predict(prompt, temperature=1.0, seed=7)
        assert loaded.top_k(prompt, 3) == model.top_k(prompt, 3)
    assert path.stat().st_size < 2_000_000


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, meta=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a learner model"):
        L.TunedModel.load(path)


def test_predict_temperature_and_logprob(default_run, eval_prompts):
    model, _ = default_run
    prompt = eval_prompts[0]
    greedy = model.predict(prompt)
    assert greedy == model.predict(prompt, temperature=0.0, seed=123)
    top = model.top_k(prompt, len(model.outputs))
    assert top[0] == greedy
    assert sum(math.exp(p.logprob) for p in top) == pytest.approx(1.0, abs=1e-6)
    assert greedy.logprob <= 0
    # sampling: reproducible with a seed, diverse across seeds at a high temperature
    assert model.predict(prompt, temperature=1.0, seed=5) == model.predict(prompt, temperature=1.0, seed=5)
    hot = {model.predict(prompt, temperature=50.0, seed=s).text for s in range(60)}
    assert len(hot) >= 4
    logprob_of = {p.text: p.logprob for p in top}
    sample = model.predict(prompt, temperature=50.0, seed=1)
    assert sample.logprob == pytest.approx(logprob_of[sample.text])
    with pytest.raises(ValueError):
        model.predict(prompt, temperature=-1.0)


def test_long_outputs_and_unicode():
    outputs = {
        "weather": "Bring an umbrella. " * 40 + "Forecast: rain until the evening, clearing overnight.",
        "food": "Try the lentil soup — it's made fresh daily with cumin, garlic and lemon. " * 20,
    }
    examples = []
    for i in range(40):
        examples.append(L.Example(f"Will it rain in city {i} tomorrow? Need an umbrella? ☔", outputs["weather"]))
        examples.append(L.Example(f"What should I eat for lunch at café {i}? Hungry!", outputs["food"]))
    model, records = L.train(examples, L.HyperParams(epochs=5, batch_size=8))
    assert model.predict("Is rain expected tomorrow, should I take an umbrella?").text == outputs["weather"]
    # outputs are whitespace-trimmed, otherwise returned whole
    assert model.predict("I'm hungry, what should I eat for lunch?").text == outputs["food"].strip()
    assert records[-1].loss < records[0].loss


def test_degenerate_datasets():
    model, records = L.train([L.Example("only one", "answer")], L.HyperParams(epochs=2))
    assert len(records) == 2 and records[0].loss == pytest.approx(0.0, abs=1e-6)
    assert model.predict("anything at all").text == "answer"
    assert model.predict("") == model.predict("unseen words only")
    with pytest.raises(ValueError, match="empty"):
        L.train([], L.HyperParams())
    with pytest.raises(ValueError, match="empty output"):
        L.train([L.Example("p", "   ")], L.HyperParams())
    for bad in (L.HyperParams(epochs=0), L.HyperParams(batch_size=0), L.HyperParams(adapter_rank=0),
                L.HyperParams(learning_rate=0.0), L.HyperParams(learning_rate=float("nan"))):
        with pytest.raises(ValueError):
            L.train([L.Example("p", "o")], bad)


def test_seed_numbers_memorised_with_tutorial_settings():
    examples = [L.example_from_gemini_api(r) for r in _read_jsonl("seeds_numbers.jsonl")]
    # the Gemini API tutorial: epoch_count=20, batch_size=4, learning_rate=0.001
    hp = L.HyperParams(epochs=20, batch_size=4, learning_rate=L.gemini_api_learning_rate(0.001))
    model, records = L.train(examples, hp)
    correct = sum(model.predict(e.prompt).text == e.output for e in examples)
    assert correct >= 0.85 * len(examples)  # measured 24/24
    assert _epoch_mean(records, 20) < 0.2 * _epoch_mean(records, 1)


# ----------------------------------------------------------------------------------------------
# hyperparameter mapping
# ----------------------------------------------------------------------------------------------


def test_learning_rate_mapping():
    assert L.vertex_learning_rate(1.0) == L.gemini_api_learning_rate(0.001) == L.DEFAULT_LEARNING_RATE
    assert L.HyperParams().learning_rate == L.DEFAULT_LEARNING_RATE
    assert L.vertex_learning_rate(2.0) == pytest.approx(2 * L.DEFAULT_LEARNING_RATE)
    assert L.gemini_api_learning_rate(0.0002) == pytest.approx(0.2 * L.DEFAULT_LEARNING_RATE)
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError):
            L.vertex_learning_rate(bad)
        with pytest.raises(ValueError):
            L.gemini_api_learning_rate(bad)


def test_gemini_api_default_batch_size():
    assert L.gemini_api_default_batch_size(20) == 4
    assert L.gemini_api_default_batch_size(99) == 4
    assert L.gemini_api_default_batch_size(100) == 16
    assert L.gemini_api_default_batch_size(5000) == 16


# ----------------------------------------------------------------------------------------------
# dataset parsing
# ----------------------------------------------------------------------------------------------


def _turn(role: str, *texts: str) -> dict:
    return {"role": role, "parts": [{"text": t} for t in texts]}


def test_example_from_vertex_single_turn():
    obj = {
        "systemInstruction": {"role": "system", "parts": [{"text": "Answer with the label only."}]},
        "contents": [_turn("user", "My parcel is late."), _turn("model", "shipping")],
    }
    ex = L.example_from_vertex(obj)
    assert ex == L.Example(prompt="Answer with the label only.\nMy parcel is late.", output="shipping")
    # the same flattening is available for serving requests
    assert L.prompt_from_contents([_turn("user", "My parcel is late.")], obj["systemInstruction"]) == ex.prompt
    assert L.flatten_prompt("Answer with the label only.", ["My parcel is late."]) == ex.prompt
    # no system instruction; snake_case system_instruction
    assert L.example_from_vertex({"contents": obj["contents"]}).prompt == "My parcel is late."
    snake = {"system_instruction": {"parts": [{"text": "Sys"}]}, "contents": obj["contents"]}
    assert L.example_from_vertex(snake).prompt == "Sys\nMy parcel is late."


def test_example_from_vertex_multi_turn_uses_last_model_turn():
    obj = {
        "contents": [
            _turn("user", "Hi"),
            _turn("model", "Hello! How can I help?"),
            _turn("user", "I was charged twice.", "Order #123."),
            _turn("model", "billing"),
        ]
    }
    ex = L.example_from_vertex(obj)
    assert ex.output == "billing"
    assert ex.prompt == "Hi\nHello! How can I help?\nI was charged twice.\nOrder #123."
    # turns after the last model turn are not part of the prompt
    trailing = {"contents": obj["contents"] + [_turn("user", "thanks")]}
    assert L.example_from_vertex(trailing) == ex


@pytest.mark.parametrize(
    "obj",
    [
        {"contents": [_turn("user", "no answer here")]},
        {"systemInstruction": {"parts": [{"text": "s"}]}, "contents": [_turn("user", "a"), _turn("user", "b")]},
    ],
)
def test_example_from_vertex_without_model_turn_raises(obj):
    with pytest.raises(ValueError, match="no 'model' turn"):
        L.example_from_vertex(obj)


@pytest.mark.parametrize("obj", [{}, {"contents": []}, {"contents": "text"}, [], {"contents": [_turn("model", "")]}])
def test_example_from_vertex_malformed_raises(obj):
    with pytest.raises(ValueError):
        L.example_from_vertex(obj)


def test_example_from_gemini_api():
    assert L.example_from_gemini_api({"textInput": "1", "output": "2"}) == L.Example("1", "2")
    assert L.example_from_gemini_api({"text_input": "twenty two", "output": "twenty three"}) == L.Example(
        "twenty two", "twenty three")
    for bad in ({"textInput": "1"}, {"output": "2"}, {"textInput": "1", "output": ""}, {"textInput": 1, "output": "2"}):
        with pytest.raises(ValueError):
            L.example_from_gemini_api(bad)


# ----------------------------------------------------------------------------------------------
# untuned base model
# ----------------------------------------------------------------------------------------------


def test_base_model_answer_is_deterministic_and_generic(eval_prompts, eval_rows):
    answers = [L.base_model_answer(p, "gemini-2.5-flash") for p in eval_prompts]
    assert answers == [L.base_model_answer(p, "gemini-2.5-flash") for p in eval_prompts]
    assert all(isinstance(a, str) and len(a) > 10 for a in answers)
    # it does not know the task: never the label, not even mentioned
    exact = sum(a.strip().lower() == r["reference"] for a, r in zip(answers, eval_rows))
    mentions = sum(r["reference"] in a.lower() for a, r in zip(answers, eval_rows))
    assert exact == 0 and mentions == 0
    assert not any(label in a.lower() for a in answers for label in LABELS)
    assert len(set(answers)) > 3  # varies with the prompt
    assert L.base_model_answer("1", "gemini-2.5-flash") != "2"
    assert "1" in L.base_model_answer("1", "gemini-2.5-flash")  # reacts to the prompt


# ----------------------------------------------------------------------------------------------
# validation loss
# ----------------------------------------------------------------------------------------------


def test_mean_loss_is_the_mean_cross_entropy_with_a_floor_for_unknown_outputs(train_examples, default_run):
    model, records = default_run
    held_out = train_examples[:40]
    loss = model.mean_loss(held_out)
    # by hand: -log p(expected output) per example, averaged
    logp = [p.logprob for ex in held_out for p in model.top_k(ex.prompt, len(model.outputs)) if p.text == ex.output]
    assert len(logp) == len(held_out)
    assert loss == pytest.approx(-sum(logp) / len(logp), rel=1e-5)
    assert 0 < loss < records[0].loss           # trained: better than the untrained ln(n_classes)
    # an output the model cannot produce counts with the floor's loss, -log(1e-6)
    floor = -math.log(L.LOSS_PROB_FLOOR)
    assert floor == pytest.approx(13.8155, abs=1e-3)
    unknown = L.Example(held_out[0].prompt, "an answer never seen in training")
    assert model.mean_loss([unknown]) == pytest.approx(floor)
    assert model.mean_loss([held_out[0], unknown]) == pytest.approx((model.mean_loss([held_out[0]]) + floor) / 2)
    assert model.mean_loss([L.Example(held_out[0].prompt, f"  {held_out[0].output}\n")]) == pytest.approx(
        model.mean_loss([held_out[0]]))          # outputs compare whitespace-trimmed, as in training
    assert model.mean_loss([]) is None


def test_mean_loss_falls_over_epochs_on_the_epoch_snapshots(train_examples):
    held_out, train = train_examples[:60], train_examples[60:]
    seen = []
    L.train(train, L.HyperParams(epochs=3), on_epoch=lambda epoch, m: seen.append((epoch, m.mean_loss(held_out))))
    assert [e for e, _ in seen] == [1, 2, 3]
    losses = [v for _, v in seen]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


# ----------------------------------------------------------------------------------------------
# the generative demo task: short support replies (include/demo/replies/)
# ----------------------------------------------------------------------------------------------
# Measured (default HyperParams, seed 0): mean ROUGE-L F1 on replies/eval_prompts.jsonl 0.722 tuned on
# replies/train.jsonl (exact match 0.463), 0.226 on replies/train_corrupted.jsonl, 0.126 for the untuned
# base model; learner seeds 0-3: 0.66-0.77 vs 0.18-0.23.

REPLIES = DEMO / "replies"
REPLY_FILES = ("train.jsonl", "train_corrupted.jsonl", "eval_prompts.jsonl", "system_instruction.txt")


def _demo_generator():
    from scripts import make_demo_data

    return make_demo_data


def _replies_jsonl(name: str) -> list[dict]:
    with open(REPLIES / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def replies_data():
    system = (REPLIES / "system_instruction.txt").read_text(encoding="utf-8").strip()
    train = [L.example_from_vertex(r) for r in _replies_jsonl("train.jsonl")]
    corrupted = [L.example_from_vertex(r) for r in _replies_jsonl("train_corrupted.jsonl")]
    rows = _replies_jsonl("eval_prompts.jsonl")
    prompts = [L.flatten_prompt(system, [r["prompt"]]) for r in rows]
    return system, train, corrupted, rows, prompts


def _mean_rouge(answers: list[str], rows: list[dict]) -> float:
    from gemini_tuning.core.metrics import rouge_l_f1

    return sum(rouge_l_f1(r["reference"], a) for a, r in zip(answers, rows)) / len(rows)


def test_replies_files_shape_and_size(replies_data):
    import re

    from gemini_tuning.core.promptset import parse_prompt_set

    system, train, corrupted, rows, _ = replies_data
    assert sum((REPLIES / n).stat().st_size for n in REPLY_FILES) < 300_000
    assert system.startswith("You are a support agent.")
    assert 250 <= len(train) <= 320 and 70 <= len(rows) <= 90
    replies = {e.output for e in train}
    assert 20 <= len(replies) <= 40                      # a moderate number of whole reply texts
    for reply in replies:  # two or three sentences, no per-message values (order numbers, amounts...)
        assert 2 <= len(re.findall(r"[.!?](?:\s|$)", reply)) <= 3, reply
        assert not re.search(r"\d", reply.replace("30 days", "")), reply
    assert all(e.prompt.startswith(system + "\n") for e in train)
    # eval: valid prompt set, per-item ROUGE-L, references are training replies, no prompt seen in training
    with open(REPLIES / "eval_prompts.jsonl", "rb") as fh:
        parsed = parse_prompt_set(fh, source_name="replies/eval_prompts.jsonl")
    assert len(parsed) == len(rows) and {p.metric for p in parsed} == {"rouge_l_f1"}
    assert {r["reference"] for r in rows} <= replies
    assert not {e.prompt[len(system) + 1:] for e in train} & {r["prompt"] for r in rows}
    assert len({r["prompt"] for r in rows}) == len(rows)
    mod = _demo_generator()
    intent_of = {rep: intent for intent, sits in mod.REPLY_SITUATIONS.items()
                 for reps, _ in sits.values() for rep in reps}
    assert replies == set(intent_of)
    assert {r["tags"][0] for r in rows} == set(mod.REPLY_INTENTS) and {r["tags"][1] for r in rows} == {"easy", "hard"}
    assert all(intent_of[r["reference"]] == r["tags"][0] for r in rows)
    # corrupted: the same messages and replies, but no message keeps a reply of its own intent
    assert [e.prompt for e in train] == [e.prompt for e in corrupted]
    assert sorted(e.output for e in train) == sorted(e.output for e in corrupted)
    assert all(intent_of[a.output] != intent_of[b.output] for a, b in zip(train, corrupted))


def test_replies_good_data_beats_corrupted_and_base_on_rouge(replies_data):
    _, train, corrupted, rows, prompts = replies_data
    good, _ = L.train(train, L.HyperParams(epochs=3))
    bad, _ = L.train(corrupted, L.HyperParams(epochs=3))
    good_answers = [p.text for p in good.predict_many(prompts)]
    good_rouge = _mean_rouge(good_answers, rows)
    bad_rouge = _mean_rouge([p.text for p in bad.predict_many(prompts)], rows)
    base_rouge = _mean_rouge([L.base_model_answer(p, "gemini-2.0-flash-001") for p in prompts], rows)
    assert good_rouge >= 0.6, good_rouge  # measured 0.722
    assert bad_rouge <= 0.3, bad_rouge  # measured 0.226
    assert base_rouge <= 0.25, base_rouge  # measured 0.126
    assert good_rouge - bad_rouge >= 0.35
    # close but not always identical: the reference is one of two paraphrases, so exact match is clearly lower
    exact = sum(a == r["reference"] for a, r in zip(good_answers, rows)) / len(rows)
    assert 0.25 <= exact <= good_rouge - 0.15, exact  # measured 0.463
    hard = [(a, r) for a, r in zip(good_answers, rows) if r["tags"][1] == "hard"]
    assert _mean_rouge([a for a, _ in hard], [r for _, r in hard]) >= 0.5  # unseen wording, measured 0.734


def test_replies_generator_is_deterministic(tmp_path):
    mod = _demo_generator()
    mod.write(tmp_path)
    for name in REPLY_FILES:
        assert (tmp_path / "replies" / name).read_bytes() == (REPLIES / name).read_bytes(), name
    again = tmp_path / "again"
    mod.write(again)
    for name in REPLY_FILES:
        assert (again / "replies" / name).read_bytes() == (tmp_path / "replies" / name).read_bytes(), name
